//! The full-text projection's errors.

/// tantivy failed, or a text query or configuration is not one it takes.
#[derive(Debug, thiserror::Error)]
pub enum TextError {
    /// tantivy failed (indexing, committing, searching).
    #[error("full-text index failed")]
    Tantivy(#[source] Box<tantivy::TantivyError>),
    /// A query in tantivy's syntax does not parse: the parser's message.
    #[error("{0}")]
    Syntax(#[source] Box<tantivy::query::QueryParserError>),
    /// A file of the in-memory index could not be read or written.
    #[error("full-text index file")]
    OpenRead(#[from] tantivy::directory::error::OpenReadError),
    /// A file of the in-memory index could not be written.
    #[error("full-text index file")]
    OpenWrite(#[from] tantivy::directory::error::OpenWriteError),
    /// An I/O error of the in-memory directory.
    #[error("full-text index I/O")]
    Io(#[from] std::io::Error),
    /// An event names a stemmer language this build does not have.
    #[error("no stemmer for language {0:?}")]
    Language(String),
    /// A snapshot names a file that is not a plain file name of an index.
    #[error("full-text index file name {0:?} in a snapshot")]
    FileName(std::path::PathBuf),
    /// The list of managed files could not be encoded.
    #[error("full-text index file list")]
    Json(#[from] serde_json::Error),
    /// Background merges kept committing while a snapshot read the files.
    #[error("full-text index kept changing while it was captured")]
    Busy,
}

impl From<tantivy::TantivyError> for TextError {
    fn from(e: tantivy::TantivyError) -> Self {
        TextError::Tantivy(Box::new(e))
    }
}
