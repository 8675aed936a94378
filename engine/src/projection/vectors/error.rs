/// Failures of the FAISS layer. These are faults of the engine or the machine, never of
/// the caller's input (input is validated before it is appended).
#[derive(Debug, thiserror::Error)]
pub enum HnswError {
    /// A `faiss` crate call failed.
    #[error("FAISS {op} failed")]
    Faiss {
        /// The operation.
        op: &'static str,
        /// The crate's error.
        #[source]
        source: faiss::error::Error,
    },
    /// A FAISS C API call returned an error code.
    #[error("FAISS {op} failed with code {code}: {message}")]
    Native {
        /// The operation.
        op: &'static str,
        /// Return code.
        code: i32,
        /// FAISS's message.
        message: String,
    },
    /// An earlier add failed part-way; the index serves nothing until a reopen.
    #[error("index {index:?} is unusable after a failed FAISS add; reopen the engine to rebuild it")]
    Faulted {
        /// Index name.
        index: String,
    },
    /// A buffer's length did not match its vectors' dimension.
    #[error("vector buffer of {actual} floats where {expected} were expected")]
    Shape {
        /// Expected floats.
        expected: usize,
        /// Floats given.
        actual: usize,
    },
    /// The scratch file holding a quantized graph's full vectors failed.
    #[error("full-vector scratch file: {op} failed")]
    Scratch {
        /// The operation.
        op: &'static str,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}
