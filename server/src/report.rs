//! One-line rendering of an error and its causes, for logs and tool output.

/// An error with its chain of causes, one line: `outer: cause: root cause`.
pub fn report(error: &(dyn std::error::Error + 'static)) -> String {
    annal_engine::chain(error)
}
