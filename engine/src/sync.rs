//! Lock helpers, and [`block_on`] for synchronous callers of the async bucket I/O.
//!
//! Lock helpers. The engine never panics while holding a lock on purpose (no unwrap or
//! expect in library code), and every locked structure is updated so that a panic
//! mid-way leaves it usable; a poisoned lock is therefore taken over, not propagated.

use std::sync::{Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

pub(crate) fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

pub(crate) fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Run `future` to completion on a fresh single-thread runtime, so a synchronous caller
/// can do storage I/O whether or not it is inside a runtime itself. Outside a runtime
/// the runtime runs on the caller's thread; inside one (where blocking in place would
/// panic or stall its worker) it runs on a thread of its own.
pub fn block_on<F>(future: F) -> Result<F::Output, std::io::Error>
where
    F: std::future::Future + Send,
    F::Output: Send,
{
    let run =
        || tokio::runtime::Builder::new_current_thread().enable_all().build().map(|rt| rt.block_on(future));
    if tokio::runtime::Handle::try_current().is_err() {
        // A thread per call was a third of the threads the engine started (the
        // engine_ops fuzzer calls it a dozen times per input).
        return run();
    }
    std::thread::scope(|scope| {
        let worker = scope.spawn(run);
        match worker.join() {
            Ok(result) => result,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_on_runs_on_the_callers_thread_outside_a_runtime_and_on_its_own_inside_one() {
        let caller = std::thread::current().id();
        let outside =
            block_on(async { (std::thread::current().id(), tokio::task::yield_now().await) }).unwrap();
        assert_eq!(outside.0, caller, "no thread is started for a caller outside a runtime");

        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let inside = runtime.block_on(async {
            // Blocking in place here would panic ("cannot start a runtime from within a
            // runtime"); block_on moves to a thread of its own.
            block_on(async { std::thread::current().id() }).unwrap()
        });
        assert_ne!(inside, caller, "inside a runtime the future runs on another thread");
    }
}
