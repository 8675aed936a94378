//! The event frame: a fixed header outside the rkyv payload, so a reader can check the
//! version, kind, length and checksum before it trusts (or allocates for) the payload.
//!
//! ```text
//! offset size field
//!      0    1 version       FRAME_VERSION (1)
//!      1    1 kind          EventKind as u8
//!      2    2 reserved      zero
//!      4    4 payload_len   u32 LE, <= EVENT_BYTES_MAX
//!      8    4 crc32         u32 LE, CRC-32 (IEEE) of bytes 0..8 followed by the payload
//!     12    n payload       rkyv 0.8 archive of (Stamp, <kind body>), little-endian,
//!                           aligned, 32-bit relative pointers
//! ```
//! The table is repeated in docs/FORMAT.md.

use rkyv::api::high::{HighSerializer, HighValidator};
use rkyv::bytecheck::CheckBytes;
use rkyv::de::Pool;
use rkyv::rancor::{BoxedError, Strategy};
use rkyv::ser::allocator::ArenaHandle;
use rkyv::util::AlignedVec;
use rkyv::{Archive, Deserialize, Serialize};

use super::types::*;
use super::wire;
use crate::limits::EVENT_BYTES_MAX;

/// Version of the frame and of every payload layout it can carry.
pub const FRAME_VERSION: u8 = 1;
/// Bytes before the payload.
pub const FRAME_HEADER_LEN: usize = 12;

/// The kind byte of a frame. Values are stored: never renumber, only append.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum EventKind {
    /// [`EventBody::IndexCreated`]
    IndexCreated = 1,
    /// [`EventBody::IndexDropped`]
    IndexDropped = 2,
    /// [`EventBody::VectorsUpserted`]
    VectorsUpserted = 3,
    /// [`EventBody::VectorsDeleted`]
    VectorsDeleted = 4,
    /// [`EventBody::ConfigPromoted`]
    ConfigPromoted = 5,
    /// [`EventBody::PromotionRolledBack`]
    PromotionRolledBack = 6,
    /// [`EventBody::HnswTrialRecorded`]
    HnswTrialRecorded = 7,
    /// [`EventBody::BucketErrorRecorded`]
    BucketErrorRecorded = 8,
    /// [`EventBody::MigrationStarted`]
    MigrationStarted = 9,
    /// [`EventBody::RecordsMoved`]
    RecordsMoved = 10,
    /// [`EventBody::MigrationFinished`]
    MigrationFinished = 11,
    /// [`EventBody::SnapshotTaken`]
    SnapshotTaken = 12,
    /// [`EventBody::LogArchived`]
    LogArchived = 13,
    /// [`EventBody::EvalSetCreated`]
    EvalSetCreated = 14,
    /// [`EventBody::TrialRecorded`]
    TrialRecorded = 15,
    /// [`EventBody::SchemeSet`]
    SchemeSet = 16,
    /// [`EventBody::MigrationBegun`]
    MigrationBegun = 17,
    /// [`EventBody::MigrationBatch`]
    MigrationBatch = 18,
    /// [`EventBody::MigrationEnded`]
    MigrationEnded = 19,
    /// [`EventBody::MigrationCleared`]
    MigrationCleared = 20,
    /// [`EventBody::IndexCreatedWithEmbedder`]
    IndexCreatedWithEmbedder = 21,
    /// [`EventBody::DocumentsUpserted`]
    DocumentsUpserted = 22,
    /// [`EventBody::DocumentsEmbedded`]
    DocumentsEmbedded = 23,
    /// [`EventBody::EmbedderChanged`]
    EmbedderChanged = 24,
    /// [`EventBody::LogTruncated`]
    LogTruncated = 25,
    /// [`EventBody::PayloadIndexCreated`]
    PayloadIndexCreated = 26,
    /// [`EventBody::PayloadIndexDropped`]
    PayloadIndexDropped = 27,
    /// [`EventBody::MetadataSet`]
    MetadataSet = 28,
    /// [`EventBody::TextIndexCreated`]
    TextIndexCreated = 29,
    /// [`EventBody::IndexCreated`] with a quantized storage (kind 1 is the flat form).
    IndexCreatedStored = 30,
    /// [`EventBody::ConfigPromoted`] of a quantized config (kind 5 is the flat form).
    ConfigPromotedStored = 31,
    /// [`EventBody::TrialRecorded`] of a quantized config (kind 15 is the flat form).
    TrialRecordedStored = 32,
    /// [`EventBody::IndexCreatedWithEmbedder`] with a quantized storage (kind 21 is
    /// the flat form).
    IndexCreatedWithEmbedderStored = 33,
}

impl EventKind {
    /// Whether an event of this kind changes what writes are validated against (which
    /// indexes exist and how, their schemes, promotions, payload and text indexes):
    /// in a cluster, a write validated before such an event of another node is
    /// refused, not appended after it. Data events (upserts, deletes, records moved,
    /// registrations, bucket errors, trials) do not.
    pub fn guards_writes(self) -> bool {
        use EventKind::*;
        match self {
            IndexCreated
            | IndexDropped
            | ConfigPromoted
            | PromotionRolledBack
            | MigrationStarted
            | MigrationFinished
            | SchemeSet
            | MigrationBegun
            | MigrationEnded
            | MigrationCleared
            | IndexCreatedWithEmbedder
            | EmbedderChanged
            | LogTruncated
            | PayloadIndexCreated
            | PayloadIndexDropped
            | TextIndexCreated
            | IndexCreatedStored
            | ConfigPromotedStored
            | IndexCreatedWithEmbedderStored => true,
            VectorsUpserted | VectorsDeleted | HnswTrialRecorded | BucketErrorRecorded | RecordsMoved
            | SnapshotTaken | LogArchived | EvalSetCreated | TrialRecorded | MigrationBatch
            | DocumentsUpserted | DocumentsEmbedded | MetadataSet | TrialRecordedStored => false,
        }
    }

    /// The kind for a stored byte, if it names one.
    pub fn from_u8(byte: u8) -> Option<Self> {
        use EventKind::*;
        Some(match byte {
            1 => IndexCreated,
            2 => IndexDropped,
            3 => VectorsUpserted,
            4 => VectorsDeleted,
            5 => ConfigPromoted,
            6 => PromotionRolledBack,
            7 => HnswTrialRecorded,
            8 => BucketErrorRecorded,
            9 => MigrationStarted,
            10 => RecordsMoved,
            11 => MigrationFinished,
            12 => SnapshotTaken,
            13 => LogArchived,
            14 => EvalSetCreated,
            15 => TrialRecorded,
            16 => SchemeSet,
            17 => MigrationBegun,
            18 => MigrationBatch,
            19 => MigrationEnded,
            20 => MigrationCleared,
            21 => IndexCreatedWithEmbedder,
            22 => DocumentsUpserted,
            23 => DocumentsEmbedded,
            24 => EmbedderChanged,
            25 => LogTruncated,
            26 => PayloadIndexCreated,
            27 => PayloadIndexDropped,
            28 => MetadataSet,
            29 => TextIndexCreated,
            30 => IndexCreatedStored,
            31 => ConfigPromotedStored,
            32 => TrialRecordedStored,
            33 => IndexCreatedWithEmbedderStored,
            _ => return None,
        })
    }

    /// The kind of an event body: a body holding a config has a flat kind and a stored
    /// (quantized) kind, by the storage of its config.
    pub fn of(body: &EventBody) -> Self {
        let flat = |config: &HnswConfig| config.storage == Storage::FLAT;
        match body {
            EventBody::IndexCreated(b) if !flat(&b.config) => EventKind::IndexCreatedStored,
            EventBody::ConfigPromoted(b) if !flat(&b.config) => EventKind::ConfigPromotedStored,
            EventBody::TrialRecorded(b) if !flat(&b.config) => EventKind::TrialRecordedStored,
            EventBody::IndexCreatedWithEmbedder(b) if !flat(&b.index.config) => {
                EventKind::IndexCreatedWithEmbedderStored
            }
            EventBody::IndexCreated(_) => EventKind::IndexCreated,
            EventBody::IndexDropped(_) => EventKind::IndexDropped,
            EventBody::VectorsUpserted(_) => EventKind::VectorsUpserted,
            EventBody::VectorsDeleted(_) => EventKind::VectorsDeleted,
            EventBody::ConfigPromoted(_) => EventKind::ConfigPromoted,
            EventBody::PromotionRolledBack(_) => EventKind::PromotionRolledBack,
            EventBody::HnswTrialRecorded(_) => EventKind::HnswTrialRecorded,
            EventBody::BucketErrorRecorded(_) => EventKind::BucketErrorRecorded,
            EventBody::MigrationStarted(_) => EventKind::MigrationStarted,
            EventBody::RecordsMoved(_) => EventKind::RecordsMoved,
            EventBody::MigrationFinished(_) => EventKind::MigrationFinished,
            EventBody::SnapshotTaken(_) => EventKind::SnapshotTaken,
            EventBody::LogArchived(_) => EventKind::LogArchived,
            EventBody::EvalSetCreated(_) => EventKind::EvalSetCreated,
            EventBody::TrialRecorded(_) => EventKind::TrialRecorded,
            EventBody::SchemeSet(_) => EventKind::SchemeSet,
            EventBody::MigrationBegun(_) => EventKind::MigrationBegun,
            EventBody::MigrationBatch(_) => EventKind::MigrationBatch,
            EventBody::MigrationEnded(_) => EventKind::MigrationEnded,
            EventBody::MigrationCleared(_) => EventKind::MigrationCleared,
            EventBody::IndexCreatedWithEmbedder(_) => EventKind::IndexCreatedWithEmbedder,
            EventBody::DocumentsUpserted(_) => EventKind::DocumentsUpserted,
            EventBody::DocumentsEmbedded(_) => EventKind::DocumentsEmbedded,
            EventBody::EmbedderChanged(_) => EventKind::EmbedderChanged,
            EventBody::LogTruncated(_) => EventKind::LogTruncated,
            EventBody::PayloadIndexCreated(_) => EventKind::PayloadIndexCreated,
            EventBody::PayloadIndexDropped(_) => EventKind::PayloadIndexDropped,
            EventBody::MetadataSet(_) => EventKind::MetadataSet,
            EventBody::TextIndexCreated(_) => EventKind::TextIndexCreated,
        }
    }
}

/// Why a frame could not be encoded or decoded. Decode errors name the sequence number
/// of the event they were read from (0 when decoding bytes that are not from the log).
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The bytes end before the header does.
    #[error("event {seq}: frame of {len} bytes is shorter than its {FRAME_HEADER_LEN}-byte header")]
    Truncated {
        /// Sequence number.
        seq: u64,
        /// Bytes present.
        len: usize,
    },
    /// A frame version this build does not read.
    #[error("event {seq}: frame version {version} is not supported (this build reads {FRAME_VERSION})")]
    UnsupportedVersion {
        /// Sequence number.
        seq: u64,
        /// Stored version.
        version: u8,
    },
    /// A kind byte that names no event.
    #[error("event {seq}: unknown event kind {kind}")]
    UnknownKind {
        /// Sequence number.
        seq: u64,
        /// Stored kind byte.
        kind: u8,
    },
    /// Reserved header bytes are not zero.
    #[error("event {seq}: reserved header bytes are {reserved:#06x}, not zero")]
    Reserved {
        /// Sequence number.
        seq: u64,
        /// Stored reserved field.
        reserved: u16,
    },
    /// The declared payload length exceeds the limit.
    #[error("event {seq}: payload length {len} exceeds the limit of {EVENT_BYTES_MAX} bytes")]
    TooLarge {
        /// Sequence number (0 while encoding).
        seq: u64,
        /// Payload length.
        len: usize,
    },
    /// The declared payload length disagrees with the bytes present.
    #[error("event {seq}: header declares {declared} payload bytes but {actual} are present")]
    LengthMismatch {
        /// Sequence number.
        seq: u64,
        /// Declared length.
        declared: usize,
        /// Present length.
        actual: usize,
    },
    /// The checksum does not match: the frame is corrupt.
    #[error("event {seq}: checksum mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    Checksum {
        /// Sequence number.
        seq: u64,
        /// Stored CRC.
        stored: u32,
        /// CRC of the bytes present.
        computed: u32,
    },
    /// The payload failed rkyv validation although its checksum matched.
    #[error("event {seq}: {kind:?} payload is invalid")]
    Payload {
        /// Sequence number.
        seq: u64,
        /// Kind from the header.
        kind: EventKind,
        /// Validation error.
        #[source]
        source: BoxedError,
    },
    /// rkyv could not serialize the event.
    #[error("event could not be serialized")]
    Serialize {
        /// Serializer error.
        #[source]
        source: BoxedError,
    },
}

/// Encode an event as one frame.
///
/// # Errors
/// [`FrameError::TooLarge`] when the payload would exceed [`EVENT_BYTES_MAX`]; the size
/// is estimated before serializing, so an oversized event is refused without building it.
pub fn encode(event: &Event) -> Result<Vec<u8>, FrameError> {
    let estimate = estimated_payload_bytes(event);
    if estimate > EVENT_BYTES_MAX {
        return Err(FrameError::TooLarge { seq: 0, len: estimate });
    }
    let stamp = &event.stamp;
    let payload = match &event.body {
        // A flat config is written in the version-1 layout of its kind (as before
        // storage kinds); a quantized one in the current layout, as its stored kind.
        EventBody::IndexCreated(b) => match wire::IndexCreatedV1::of(b) {
            Some(v1) => archive(stamp, &v1),
            None => archive(stamp, b),
        },
        EventBody::IndexDropped(b) => archive(stamp, b),
        EventBody::VectorsUpserted(b) => archive(stamp, b),
        EventBody::VectorsDeleted(b) => archive(stamp, b),
        EventBody::ConfigPromoted(b) => match wire::ConfigPromotedV1::of(b) {
            Some(v1) => archive(stamp, &v1),
            None => archive(stamp, b),
        },
        EventBody::PromotionRolledBack(b) => archive(stamp, b),
        EventBody::HnswTrialRecorded(b) => archive(stamp, b),
        EventBody::BucketErrorRecorded(b) => archive(stamp, b),
        EventBody::MigrationStarted(b) => archive(stamp, b),
        EventBody::RecordsMoved(b) => archive(stamp, b),
        EventBody::MigrationFinished(b) => archive(stamp, b),
        EventBody::SnapshotTaken(b) => archive(stamp, b),
        EventBody::LogArchived(b) => archive(stamp, b),
        EventBody::EvalSetCreated(b) => archive(stamp, b),
        EventBody::TrialRecorded(b) => match wire::TrialRecordedV1::of(b) {
            Some(v1) => archive(stamp, &v1),
            None => archive(stamp, b),
        },
        EventBody::SchemeSet(b) => archive(stamp, b),
        EventBody::MigrationBegun(b) => archive(stamp, b),
        EventBody::MigrationBatch(b) => archive(stamp, b),
        EventBody::MigrationEnded(b) => archive(stamp, b),
        EventBody::MigrationCleared(b) => archive(stamp, b),
        EventBody::IndexCreatedWithEmbedder(b) => match wire::IndexCreatedWithEmbedderV1::of(b) {
            Some(v1) => archive(stamp, &v1),
            None => archive(stamp, b),
        },
        EventBody::DocumentsUpserted(b) => archive(stamp, b),
        EventBody::DocumentsEmbedded(b) => archive(stamp, b),
        EventBody::EmbedderChanged(b) => archive(stamp, b),
        EventBody::LogTruncated(b) => archive(stamp, b),
        EventBody::PayloadIndexCreated(b) => archive(stamp, b),
        EventBody::PayloadIndexDropped(b) => archive(stamp, b),
        EventBody::MetadataSet(b) => archive(stamp, b),
        EventBody::TextIndexCreated(b) => archive(stamp, b),
    }?;
    let len = u32::try_from(payload.len())
        .ok()
        .filter(|&l| l as usize <= EVENT_BYTES_MAX)
        .ok_or(FrameError::TooLarge { seq: 0, len: payload.len() })?;
    let mut frame = Vec::with_capacity(FRAME_HEADER_LEN + payload.len());
    frame.push(FRAME_VERSION);
    frame.push(EventKind::of(&event.body) as u8);
    frame.extend_from_slice(&0u16.to_le_bytes());
    frame.extend_from_slice(&len.to_le_bytes());
    let crc = checksum(&frame[..8], &payload);
    frame.extend_from_slice(&crc.to_le_bytes());
    frame.extend_from_slice(&payload);
    Ok(frame)
}

/// Decode and validate one frame read from sequence number `seq`.
///
/// # Errors
/// A [`FrameError`] naming `seq` for any truncation, unknown version or kind, length
/// disagreement, checksum mismatch or invalid payload. Never panics on any input.
pub fn decode(seq: u64, frame: &[u8]) -> Result<Event, FrameError> {
    let (kind, payload) = check(seq, frame)?;
    // Values read from redb are rarely 16-byte aligned; rkyv needs aligned input.
    let mut aligned = AlignedVec::<16>::with_capacity(payload.len());
    aligned.extend_from_slice(payload);
    let bytes = aligned.as_slice();
    let err = |source| FrameError::Payload { seq, kind, source };
    let (stamp, body) = match kind {
        EventKind::IndexCreated => {
            unarchive::<wire::IndexCreatedV1>(bytes).map(|(s, b)| (s, EventBody::IndexCreated(b.into())))
        }
        EventKind::IndexCreatedStored => unarchive(bytes).map(|(s, b)| (s, EventBody::IndexCreated(b))),
        EventKind::IndexDropped => unarchive(bytes).map(|(s, b)| (s, EventBody::IndexDropped(b))),
        EventKind::VectorsUpserted => unarchive(bytes).map(|(s, b)| (s, EventBody::VectorsUpserted(b))),
        EventKind::VectorsDeleted => unarchive(bytes).map(|(s, b)| (s, EventBody::VectorsDeleted(b))),
        EventKind::ConfigPromoted => {
            unarchive::<wire::ConfigPromotedV1>(bytes).map(|(s, b)| (s, EventBody::ConfigPromoted(b.into())))
        }
        EventKind::ConfigPromotedStored => unarchive(bytes).map(|(s, b)| (s, EventBody::ConfigPromoted(b))),
        EventKind::PromotionRolledBack => {
            unarchive(bytes).map(|(s, b)| (s, EventBody::PromotionRolledBack(b)))
        }
        EventKind::HnswTrialRecorded => unarchive(bytes).map(|(s, b)| (s, EventBody::HnswTrialRecorded(b))),
        EventKind::BucketErrorRecorded => {
            unarchive(bytes).map(|(s, b)| (s, EventBody::BucketErrorRecorded(b)))
        }
        EventKind::MigrationStarted => unarchive(bytes).map(|(s, b)| (s, EventBody::MigrationStarted(b))),
        EventKind::RecordsMoved => unarchive(bytes).map(|(s, b)| (s, EventBody::RecordsMoved(b))),
        EventKind::MigrationFinished => unarchive(bytes).map(|(s, b)| (s, EventBody::MigrationFinished(b))),
        EventKind::SnapshotTaken => unarchive(bytes).map(|(s, b)| (s, EventBody::SnapshotTaken(b))),
        EventKind::LogArchived => unarchive(bytes).map(|(s, b)| (s, EventBody::LogArchived(b))),
        EventKind::EvalSetCreated => unarchive(bytes).map(|(s, b)| (s, EventBody::EvalSetCreated(b))),
        EventKind::TrialRecorded => {
            unarchive::<wire::TrialRecordedV1>(bytes).map(|(s, b)| (s, EventBody::TrialRecorded(b.into())))
        }
        EventKind::TrialRecordedStored => unarchive(bytes).map(|(s, b)| (s, EventBody::TrialRecorded(b))),
        EventKind::SchemeSet => unarchive(bytes).map(|(s, b)| (s, EventBody::SchemeSet(b))),
        EventKind::MigrationBegun => unarchive(bytes).map(|(s, b)| (s, EventBody::MigrationBegun(b))),
        EventKind::MigrationBatch => unarchive(bytes).map(|(s, b)| (s, EventBody::MigrationBatch(b))),
        EventKind::MigrationEnded => unarchive(bytes).map(|(s, b)| (s, EventBody::MigrationEnded(b))),
        EventKind::MigrationCleared => unarchive(bytes).map(|(s, b)| (s, EventBody::MigrationCleared(b))),
        EventKind::IndexCreatedWithEmbedder => unarchive::<wire::IndexCreatedWithEmbedderV1>(bytes)
            .map(|(s, b)| (s, EventBody::IndexCreatedWithEmbedder(b.into()))),
        EventKind::IndexCreatedWithEmbedderStored => {
            unarchive(bytes).map(|(s, b)| (s, EventBody::IndexCreatedWithEmbedder(b)))
        }
        EventKind::DocumentsUpserted => unarchive(bytes).map(|(s, b)| (s, EventBody::DocumentsUpserted(b))),
        EventKind::DocumentsEmbedded => unarchive(bytes).map(|(s, b)| (s, EventBody::DocumentsEmbedded(b))),
        EventKind::EmbedderChanged => unarchive(bytes).map(|(s, b)| (s, EventBody::EmbedderChanged(b))),
        EventKind::LogTruncated => unarchive(bytes).map(|(s, b)| (s, EventBody::LogTruncated(b))),
        EventKind::PayloadIndexCreated => {
            unarchive(bytes).map(|(s, b)| (s, EventBody::PayloadIndexCreated(b)))
        }
        EventKind::PayloadIndexDropped => {
            unarchive(bytes).map(|(s, b)| (s, EventBody::PayloadIndexDropped(b)))
        }
        EventKind::MetadataSet => unarchive(bytes).map(|(s, b)| (s, EventBody::MetadataSet(b))),
        EventKind::TextIndexCreated => unarchive(bytes).map(|(s, b)| (s, EventBody::TextIndexCreated(b))),
    }
    .map_err(err)?;
    Ok(Event { stamp, body })
}

/// Check a frame's header and checksum without decoding the payload; returns the kind
/// and the payload bytes. This is what `verify` runs over the whole log.
///
/// # Errors
/// As [`decode`], except payload validation.
pub fn check(seq: u64, frame: &[u8]) -> Result<(EventKind, &[u8]), FrameError> {
    let (header, payload) = frame
        .split_first_chunk::<FRAME_HEADER_LEN>()
        .ok_or(FrameError::Truncated { seq, len: frame.len() })?;
    let [version, kind, r0, r1, l0, l1, l2, l3, c0, c1, c2, c3] = *header;
    if version != FRAME_VERSION {
        return Err(FrameError::UnsupportedVersion { seq, version });
    }
    let kind = EventKind::from_u8(kind).ok_or(FrameError::UnknownKind { seq, kind })?;
    let reserved = u16::from_le_bytes([r0, r1]);
    if reserved != 0 {
        return Err(FrameError::Reserved { seq, reserved });
    }
    let declared = u32::from_le_bytes([l0, l1, l2, l3]) as usize;
    if declared > EVENT_BYTES_MAX {
        return Err(FrameError::TooLarge { seq, len: declared });
    }
    if declared != payload.len() {
        return Err(FrameError::LengthMismatch { seq, declared, actual: payload.len() });
    }
    let stored = u32::from_le_bytes([c0, c1, c2, c3]);
    let computed = checksum(&header[..8], payload);
    if stored != computed {
        return Err(FrameError::Checksum { seq, stored, computed });
    }
    Ok((kind, payload))
}

fn checksum(header: &[u8], payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(header);
    hasher.update(payload);
    hasher.finalize()
}

fn archive<T>(stamp: &Stamp, body: &T) -> Result<AlignedVec, FrameError>
where
    T: Clone,
    (Stamp, T): for<'a> Serialize<HighSerializer<AlignedVec, ArenaHandle<'a>, BoxedError>>,
{
    // rkyv archives owned values; the clone is one memcpy of the body.
    let root = (stamp.clone(), body.clone());
    rkyv::to_bytes::<BoxedError>(&root).map_err(|source| FrameError::Serialize { source })
}

fn unarchive<T>(bytes: &[u8]) -> Result<(Stamp, T), BoxedError>
where
    (Stamp, T): Archive,
    <(Stamp, T) as Archive>::Archived: for<'a> CheckBytes<HighValidator<'a, BoxedError>>
        + Deserialize<(Stamp, T), Strategy<Pool, BoxedError>>,
{
    rkyv::from_bytes::<(Stamp, T), BoxedError>(bytes)
}

/// Bytes an rkyv archive may add around each string or option (length, pointer,
/// alignment), for the estimate.
const SLACK: usize = 64;

/// Upper bound of the archived size of one upsert item.
pub fn estimated_item_bytes(item: &VectorItem) -> usize {
    let o = |text: &Option<String>| text.as_ref().map_or(SLACK, |t| t.len() + SLACK);
    (item.id.len() + SLACK)
        .saturating_add(item.vector.len().saturating_mul(4))
        .saturating_add(o(&item.metadata))
        .saturating_add(o(&item.partition))
}

/// An upper-bound estimate of one document's share of an event's payload.
pub fn estimated_document_bytes(item: &DocumentItem) -> usize {
    let o = |text: &Option<String>| text.as_ref().map_or(SLACK, |t| t.len() + SLACK);
    (item.id.len() + SLACK)
        .saturating_add(item.text.len() + SLACK)
        .saturating_add(o(&item.metadata))
        .saturating_add(o(&item.partition))
}

/// An upper-bound estimate of an event's payload size, computed without allocating;
/// `encode` refuses events whose estimate exceeds [`EVENT_BYTES_MAX`].
pub fn estimated_payload_bytes(event: &Event) -> usize {
    let s = |text: &str| text.len() + SLACK;
    let body = match &event.body {
        EventBody::VectorsUpserted(b) => {
            b.items.iter().fold(s(&b.index), |acc, item| acc.saturating_add(estimated_item_bytes(item)))
        }
        EventBody::VectorsDeleted(b) => b.ids.iter().fold(s(&b.index), |acc, id| acc.saturating_add(s(id))),
        EventBody::RecordsMoved(b) => b.moves.iter().fold(s(&b.cursor), |acc, m| {
            acc.saturating_add(s(&m.id)).saturating_add(s(&m.from)).saturating_add(s(&m.to))
        }),
        EventBody::MigrationStarted(b) => b
            .scheme
            .partitions
            .iter()
            .fold(s(&b.scheme.name) + s(&b.index) + s(&b.migration_id), |acc, p| acc.saturating_add(s(p))),
        EventBody::ConfigPromoted(b) => s(&b.index) + s(&b.trial_id) + s(&b.promoted_by) + s(&b.note),
        EventBody::BucketErrorRecorded(b) => s(&b.bucket) + s(&b.key) + s(&b.error),
        EventBody::IndexCreated(b) => s(&b.name),
        EventBody::IndexDropped(b) => s(&b.name),
        EventBody::PromotionRolledBack(b) => s(&b.index),
        EventBody::HnswTrialRecorded(b) => s(&b.index) + s(&b.trial_id),
        EventBody::MigrationFinished(b) => s(&b.migration_id),
        EventBody::SnapshotTaken(b) => s(&b.bucket) + s(&b.key),
        EventBody::LogArchived(b) => s(&b.bucket) + s(&b.key),
        EventBody::EvalSetCreated(b) => s(&b.index) + s(&b.eval_id) + s(&b.bucket) + s(&b.key),
        EventBody::TrialRecorded(b) => s(&b.index) + s(&b.trial_id) + s(&b.eval_id),
        EventBody::SchemeSet(b) => s(&b.index) + s(&b.template),
        EventBody::MigrationBegun(b) => s(&b.index) + s(&b.migration_id) + s(&b.template),
        EventBody::MigrationBatch(b) => {
            let moves = b.moves.iter().fold(s(&b.index) + s(&b.migration_id) + s(&b.cursor), |acc, m| {
                acc.saturating_add(s(&m.id)).saturating_add(s(&m.from)).saturating_add(s(&m.to))
            });
            b.errors.iter().fold(moves, |acc, e| acc.saturating_add(s(&e.id)).saturating_add(s(&e.reason)))
        }
        EventBody::MigrationEnded(b) => s(&b.index) + s(&b.migration_id),
        EventBody::MigrationCleared(b) => s(&b.index) + s(&b.migration_id),
        EventBody::IndexCreatedWithEmbedder(b) => s(&b.index.name) + s(&b.embedder.model),
        EventBody::DocumentsUpserted(b) => {
            b.items.iter().fold(s(&b.index), |acc, item| acc.saturating_add(estimated_document_bytes(item)))
        }
        EventBody::DocumentsEmbedded(b) => b.items.iter().fold(s(&b.index) + s(&b.model), |acc, item| {
            acc.saturating_add(s(&item.id)).saturating_add(item.vector.len().saturating_mul(4))
        }),
        EventBody::EmbedderChanged(b) => s(&b.index) + s(&b.embedder.model),
        EventBody::LogTruncated(b) => s(&b.bucket) + s(&b.key) + s(&b.reason),
        EventBody::PayloadIndexCreated(b) => s(&b.index) + s(&b.field),
        EventBody::PayloadIndexDropped(b) => s(&b.index) + s(&b.field),
        EventBody::MetadataSet(b) => b.items.iter().fold(s(&b.index), |acc, item| {
            acc.saturating_add(s(&item.id))
                .saturating_add(item.metadata.as_deref().map_or(0, s))
                .saturating_add(item.partition.as_deref().map_or(0, s))
        }),
        EventBody::TextIndexCreated(b) => b
            .fields
            .iter()
            .fold(s(&b.index).saturating_add(b.stemmer.as_deref().map_or(0, s)), |acc, field| {
                acc.saturating_add(s(field))
            }),
    };
    body.saturating_add(s(&event.stamp.actor))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame() -> Vec<u8> {
        let body = EventBody::IndexDropped(IndexDropped { name: "docs".into() });
        encode(&Event { stamp: Stamp { time_ms: 7, actor: "a".into() }, body }).unwrap()
    }

    #[test]
    fn a_frame_decodes_to_the_event_it_encodes() {
        let event = decode(3, &frame()).unwrap();
        assert_eq!(event.stamp, Stamp { time_ms: 7, actor: "a".into() });
        assert_eq!(event.body, EventBody::IndexDropped(IndexDropped { name: "docs".into() }));
    }

    #[test]
    fn every_header_fault_is_a_typed_error_naming_the_sequence_number() {
        let good = frame();
        type Expect = fn(&FrameError) -> bool;
        let mut cases: Vec<(Vec<u8>, Expect)> = Vec::new();
        cases.push((good[..5].to_vec(), |e| matches!(e, FrameError::Truncated { seq: 9, len: 5 })));
        let mut v = good.clone();
        v[0] = 2;
        cases.push((v, |e| matches!(e, FrameError::UnsupportedVersion { seq: 9, version: 2 })));
        let mut v = good.clone();
        v[1] = 200;
        cases.push((v, |e| matches!(e, FrameError::UnknownKind { seq: 9, kind: 200 })));
        let mut v = good.clone();
        v[2] = 1;
        cases.push((v, |e| matches!(e, FrameError::Reserved { seq: 9, .. })));
        let mut v = good.clone();
        v[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        cases.push((v, |e| matches!(e, FrameError::TooLarge { seq: 9, .. })));
        let mut v = good.clone();
        v.push(0);
        cases.push((v, |e| matches!(e, FrameError::LengthMismatch { seq: 9, .. })));
        let mut v = good.clone();
        let last = v.len() - 1;
        v[last] ^= 1;
        cases.push((v, |e| matches!(e, FrameError::Checksum { seq: 9, .. })));
        for (bytes, expected) in cases {
            let err = decode(9, &bytes).unwrap_err();
            assert!(expected(&err), "unexpected {err:?}");
            assert!(err.to_string().starts_with("event 9: "), "{err}");
        }
    }

    #[test]
    fn a_payload_that_passes_the_checksum_but_not_validation_is_refused() {
        // Point the (out-of-line) name string past the end of the payload and write a
        // matching length and CRC: only bytecheck can catch it.
        let body = EventBody::IndexDropped(IndexDropped { name: "a-name-longer-than-inline".repeat(4) });
        let good = encode(&Event { stamp: Stamp { time_ms: 7, actor: "a".into() }, body }).unwrap();
        let mut v = good[..FRAME_HEADER_LEN].to_vec();
        // Keep only the tail of the payload (the root object), dropping the string bytes.
        v.extend_from_slice(&good[good.len() - 32..]);
        let len = (v.len() - FRAME_HEADER_LEN) as u32;
        v[4..8].copy_from_slice(&len.to_le_bytes());
        let crc = checksum(&v[..8], &v[FRAME_HEADER_LEN..]);
        v[8..12].copy_from_slice(&crc.to_le_bytes());
        let result = decode(4, &v);
        assert!(
            matches!(result, Err(FrameError::Payload { seq: 4, kind: EventKind::IndexDropped, .. })),
            "{result:?}"
        );
    }

    #[test]
    fn a_flat_config_keeps_its_version_1_kind_and_a_quantized_one_takes_its_stored_kind() {
        let created = |storage| IndexCreated {
            name: "docs".into(),
            dimension: 8,
            metric: Metric::L2,
            config: HnswConfig { storage, ..HnswConfig::default() },
        };
        let sq8 = Storage { kind: StorageKind::Sq8, pq_m: 0, refine: 4 };
        let stamp = Stamp { time_ms: 7, actor: "a".into() };
        for (storage, kind) in
            [(Storage::FLAT, EventKind::IndexCreated), (sq8, EventKind::IndexCreatedStored)]
        {
            let bodies = [
                EventBody::IndexCreated(created(storage)),
                EventBody::IndexCreatedWithEmbedder(IndexCreatedWithEmbedder {
                    index: created(storage),
                    embedder: EmbedderRef { model: "m".into(), dimension: 8 },
                }),
                EventBody::ConfigPromoted(ConfigPromoted {
                    index: "docs".into(),
                    config: created(storage).config,
                    trial_id: String::new(),
                    promoted_by: "a".into(),
                    note: String::new(),
                }),
            ];
            assert_eq!(EventKind::of(&bodies[0]), kind);
            for body in bodies {
                let event = Event { stamp: stamp.clone(), body };
                let frame = encode(&event).unwrap();
                assert_eq!(frame[1], EventKind::of(&event.body) as u8);
                assert_eq!(decode(1, &frame).unwrap(), event, "round trip, storage {storage:?}");
            }
        }
        // The flat form is the version-1 layout: the config's three u32s, no storage.
        let v1 = wire::IndexCreatedV1::of(&created(Storage::FLAT)).unwrap();
        let flat =
            encode(&Event { stamp: stamp.clone(), body: EventBody::IndexCreated(created(Storage::FLAT)) });
        assert_eq!(&flat.unwrap()[FRAME_HEADER_LEN..], archive(&stamp, &v1).unwrap().as_slice());
        assert!(wire::IndexCreatedV1::of(&created(sq8)).is_none(), "no version-1 form of a quantized config");
    }

    #[test]
    fn kind_bytes_round_trip() {
        for byte in 0..=u8::MAX {
            if let Some(kind) = EventKind::from_u8(byte) {
                assert_eq!(kind as u8, byte);
            }
        }
        assert_eq!((1..=11).filter_map(EventKind::from_u8).count(), 11);
    }
}
