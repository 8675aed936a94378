//! How a long job (a trial, an evaluation, a migration) reports where it stands.

/// Where a job stands: `done` of `total` units of its current `stage`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// What it is doing: `reading`, `truth`, `building`, `measuring`
    /// for trials and evaluations; `moving` for a migration.
    pub stage: &'static str,
    /// Units done.
    pub done: u64,
    /// Units in all.
    pub total: u64,
}

/// A progress callback (a job's status; a no-op for direct calls).
pub type OnProgress<'a> = &'a (dyn Fn(Progress) + Sync);
