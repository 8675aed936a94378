//! Reachability probes: write, read back and delete a small object.
use object_store::{ObjectStoreExt, PutPayload};
use std::time::Instant;

use super::objects::checked;
use super::*;
use crate::event::{BucketOp, Stamp};
use crate::limits;

impl Storage {
    /// Write a small object, read it back, compare and delete it. Each failed step is
    /// journaled like any other operation. The report is kept for [`Storage::buckets`].
    ///
    /// # Errors
    /// [`StorageError::UnknownBucket`] only: an unreachable bucket is a report.
    pub async fn probe(&self, actor: &str, bucket: &str) -> Result<ProbeReport, StorageError> {
        let b = self.bucket(bucket)?;
        let started = Instant::now();
        let at_ms = Stamp::now(actor).time_ms;
        let key = format!(".annal/probe-{at_ms}-{}", std::process::id());
        let path = checked(&key)?;
        let payload: Vec<u8> =
            (0..limits::PROBE_OBJECT_BYTES).map(|i| (i as u8).wrapping_mul(31) ^ 0x5a).collect();
        let outcome: Result<(), (BucketOp, String)> = async {
            if let Err(e) = b.store.put(&path, PutPayload::from(payload.clone())).await {
                return Err((BucketOp::Write, self.failed(actor, bucket, BucketOp::Write, &key, e).await));
            }
            match b.store.get(&path).await {
                Ok(got) => match got.bytes().await {
                    Ok(bytes) if bytes[..] == payload[..] => {}
                    Ok(bytes) => {
                        let e = object_store::Error::Generic {
                            store: "probe",
                            source: format!(
                                "read back {} bytes that differ from the {} written",
                                bytes.len(),
                                payload.len()
                            )
                            .into(),
                        };
                        return Err((
                            BucketOp::Read,
                            self.failed(actor, bucket, BucketOp::Read, &key, e).await,
                        ));
                    }
                    Err(e) => {
                        return Err((
                            BucketOp::Read,
                            self.failed(actor, bucket, BucketOp::Read, &key, e).await,
                        ))
                    }
                },
                Err(e) => {
                    return Err((BucketOp::Read, self.failed(actor, bucket, BucketOp::Read, &key, e).await))
                }
            }
            if let Err(e) = b.store.delete(&path).await {
                return Err((BucketOp::Delete, self.failed(actor, bucket, BucketOp::Delete, &key, e).await));
            }
            Ok(())
        }
        .await
        .map_err(|(op, e)| (op, e.to_string()));
        let report = ProbeReport {
            reachable: outcome.is_ok(),
            failed: outcome.as_ref().err().map(|(op, _)| *op),
            error: outcome.err().map(|(_, e)| e),
            elapsed: started.elapsed(),
            at_ms,
        };
        self.probes.lock().insert(bucket.to_owned(), report.clone());
        Ok(report)
    }
}
