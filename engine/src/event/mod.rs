//! Events: the one record of every mutation, and the frame that stores them.

mod frame;
mod types;
mod wire;

pub use frame::{
    check, decode, encode, estimated_document_bytes, estimated_item_bytes, estimated_payload_bytes,
    EventKind, FrameError, FRAME_HEADER_LEN, FRAME_VERSION,
};
pub use types::*;
