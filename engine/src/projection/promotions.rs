//! The promotion state: per index, the HNSW configuration promoted to serve it (with who
//! promoted it, on which trial's evidence, and why) and the history of earlier
//! promotions to roll back to. A projection of `ConfigPromoted` and
//! `PromotionRolledBack` events, so "why is this config active, who chose it, and on
//! what evidence?" is answered from the log, identically after any restart.
//!
//! The vector projection applies the same events to the graphs (a new `m` or
//! `ef_construction` queues a rebuild, `ef_search` applies at once); this one keeps the
//! record of them.

use std::collections::BTreeMap;

use parking_lot::RwLock;

use crate::codec::{Dec, Enc};
use crate::event::{ConfigPromoted, Event, EventBody, HnswConfig};
use crate::projection::{ApplyError, Outcome, Projection, SnapshotError};

/// Earlier promotions kept per index to roll back to; the oldest is dropped beyond it.
pub const HISTORY_MAX: usize = 50;

/// One promotion, as its event recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Promotion {
    /// The configuration promoted.
    pub config: HnswConfig,
    /// The trial whose measurements justified it (empty: promoted without one).
    pub trial_id: String,
    /// Who promoted it.
    pub promoted_by: String,
    /// Why.
    pub note: String,
    /// Sequence number of its `ConfigPromoted` event.
    pub seq: u64,
    /// When it was promoted, ms since the Unix epoch.
    pub time_ms: u64,
}

/// The promotion state of one index.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IndexPromotions {
    /// The promotion in effect; `None`: the index serves its creation config.
    pub current: Option<Promotion>,
    /// Earlier promotions, oldest first; a rollback makes the last one current again.
    pub history: Vec<Promotion>,
}

/// The promotion-state projection.
#[derive(Default)]
pub struct PromotionState {
    indexes: RwLock<BTreeMap<String, IndexPromotions>>,
}

impl PromotionState {
    /// The promotion in effect for `index`, if any.
    pub fn current(&self, index: &str) -> Option<Promotion> {
        self.indexes.read().get(index).and_then(|p| p.current.clone())
    }

    /// The configuration promoted for `index`, or `default` when none is.
    pub fn config_or(&self, index: &str, default: HnswConfig) -> HnswConfig {
        self.current(index).map_or(default, |p| p.config)
    }

    /// The whole state of `index` (current and history); empty if never promoted.
    pub fn get(&self, index: &str) -> IndexPromotions {
        self.indexes.read().get(index).cloned().unwrap_or_default()
    }

    /// Every index with a promotion in effect, by name, with it.
    pub fn list_all(&self) -> Vec<(String, Promotion)> {
        self.indexes
            .read()
            .iter()
            .filter_map(|(name, p)| p.current.clone().map(|current| (name.clone(), current)))
            .collect()
    }

    /// False (and nothing changes) for an index that does not exist.
    fn promote(&self, seq: u64, time_ms: u64, promoted: &ConfigPromoted) -> bool {
        let mut indexes = self.indexes.write();
        let Some(state) = indexes.get_mut(&promoted.index) else { return false };
        let promotion = Promotion {
            config: promoted.config,
            trial_id: promoted.trial_id.clone(),
            promoted_by: promoted.promoted_by.clone(),
            note: promoted.note.clone(),
            seq,
            time_ms,
        };
        if let Some(previous) = state.current.replace(promotion) {
            state.history.push(previous);
            if state.history.len() > HISTORY_MAX {
                state.history.remove(0);
            }
        }
        true
    }

    /// Pop the history back into current (or clear current when the history is
    /// empty); false when nothing is promoted.
    fn roll_back(&self, index: &str) -> bool {
        let mut indexes = self.indexes.write();
        let Some(state) = indexes.get_mut(index) else { return false };
        if state.current.is_none() {
            return false;
        }
        state.current = state.history.pop();
        true
    }
}

impl Projection for PromotionState {
    fn name(&self) -> &'static str {
        "promotions"
    }

    fn apply(&self, seq: u64, event: &Event) -> Result<Outcome, ApplyError> {
        let mut outcome = Outcome::default();
        match &event.body {
            EventBody::ConfigPromoted(promoted) => {
                outcome.rejected = u64::from(!self.promote(seq, event.stamp.time_ms, promoted));
            }
            EventBody::PromotionRolledBack(rolled) => {
                outcome.rejected = u64::from(!self.roll_back(&rolled.index));
            }
            // Every index has an entry, empty until promoted; a dropped index takes its
            // promotions with it.
            EventBody::IndexCreated(created)
            | EventBody::IndexCreatedWithEmbedder(crate::event::IndexCreatedWithEmbedder {
                index: created,
                ..
            }) => {
                self.indexes.write().entry(created.name.clone()).or_default();
            }
            EventBody::IndexDropped(dropped) => {
                self.indexes.write().remove(&dropped.name);
            }
            _ => {}
        }
        Ok(outcome)
    }

    /// `u64` index count, then per index (by name): `str` name, `u8` 0/1 current then
    /// the promotion, `u64` history count then each promotion oldest first. A promotion:
    /// `u32` m, ef_construction, ef_search, `str` trial_id, promoted_by, note, `u64` seq,
    /// time_ms.
    fn write_snapshot(&self, _seq: u64, out: &mut dyn std::io::Write) -> Result<(), SnapshotError> {
        let mut e = Enc::default();
        let indexes = self.indexes.read();
        e.u64(indexes.len() as u64);
        for (name, state) in indexes.iter() {
            e.str(name);
            match &state.current {
                Some(p) => {
                    e.u8(1);
                    write_promotion(&mut e, p);
                }
                None => e.u8(0),
            }
            e.u64(state.history.len() as u64);
            for p in &state.history {
                write_promotion(&mut e, p);
            }
        }
        drop(indexes);
        out.write_all(&e.buf)?;
        Ok(())
    }

    fn restore_snapshot(&self, _seq: u64, bytes: &[u8]) -> Result<(), SnapshotError> {
        let corrupt = |source| SnapshotError::Corrupt { projection: "promotions", source };
        let mut d = Dec::new(bytes);
        // The smallest index: an empty name, no current, an empty history.
        let n = d.count(8 + 1 + 8).map_err(corrupt)?;
        let mut indexes = BTreeMap::new();
        for _ in 0..n {
            let name = d.str().map_err(corrupt)?.to_owned();
            let current = match d.u8().map_err(corrupt)? {
                0 => None,
                1 => Some(read_promotion(&mut d).map_err(corrupt)?),
                tag => return Err(corrupt(d.error(format!("current tag {tag}")))),
            };
            let count = d.count(PROMOTION_BYTES_MIN).map_err(corrupt)?;
            if count > HISTORY_MAX {
                return Err(corrupt(d.error(format!("index {name:?}: history of {count}"))));
            }
            let history =
                (0..count).map(|_| read_promotion(&mut d)).collect::<Result<_, _>>().map_err(corrupt)?;
            let state = IndexPromotions { current, history };
            if indexes.insert(name.clone(), state).is_some() {
                return Err(corrupt(d.error(format!("index {name:?} appears twice"))));
            }
        }
        d.finish().map_err(corrupt)?;
        *self.indexes.write() = indexes;
        Ok(())
    }
}

/// A config, three empty strings, two `u64`s.
const PROMOTION_BYTES_MIN: usize = crate::codec::CONFIG_BYTES + 3 * 8 + 16;

fn write_promotion(e: &mut Enc, p: &Promotion) {
    crate::codec::write_config(e, &p.config);
    e.str(&p.trial_id);
    e.str(&p.promoted_by);
    e.str(&p.note);
    e.u64(p.seq);
    e.u64(p.time_ms);
}

fn read_promotion(d: &mut Dec<'_>) -> Result<Promotion, crate::codec::DecodeError> {
    let config = crate::codec::read_config(d)?;
    Ok(Promotion {
        config,
        trial_id: d.str()?.to_owned(),
        promoted_by: d.str()?.to_owned(),
        note: d.str()?.to_owned(),
        seq: d.u64()?,
        time_ms: d.u64()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::PromotionRolledBack;

    fn create(state: &PromotionState) {
        let body = EventBody::IndexCreated(crate::event::IndexCreated {
            name: "docs".into(),
            dimension: 4,
            metric: crate::event::Metric::L2,
            config: HnswConfig::default(),
        });
        state.apply(0, &Event::new("ops", body)).unwrap();
    }

    fn promote(state: &PromotionState, seq: u64, m: u32) {
        let body = EventBody::ConfigPromoted(ConfigPromoted {
            index: "docs".into(),
            config: HnswConfig { m, ef_construction: 40, ef_search: 16, ..Default::default() },
            trial_id: format!("t{seq}"),
            promoted_by: "ops".into(),
            note: "why".into(),
        });
        state.apply(seq, &Event::new("ops", body)).unwrap();
    }

    fn roll_back(state: &PromotionState, seq: u64) -> u64 {
        let body = EventBody::PromotionRolledBack(PromotionRolledBack { index: "docs".into() });
        state.apply(seq, &Event::new("ops", body)).unwrap().rejected
    }

    #[test]
    fn the_state_round_trips_through_its_snapshot_section() {
        let state = PromotionState::default();
        create(&state);
        for seq in 1..=5 {
            promote(&state, seq, 8 + seq as u32);
        }
        let mut bytes = Vec::new();
        state.write_snapshot(5, &mut bytes).unwrap();
        let back = PromotionState::default();
        back.restore_snapshot(5, &bytes).unwrap();
        assert_eq!(back.get("docs"), state.get("docs"));
        for len in 0..bytes.len() {
            assert!(PromotionState::default().restore_snapshot(5, &bytes[..len]).is_err(), "length {len}");
        }
    }

    #[test]
    fn a_rollback_with_nothing_promoted_is_rejected_and_changes_nothing() {
        let state = PromotionState::default();
        create(&state);
        assert_eq!(roll_back(&state, 1), 1);
        promote(&state, 2, 8);
        assert_eq!(roll_back(&state, 3), 0);
        assert_eq!(state.current("docs"), None);
        assert_eq!(roll_back(&state, 4), 1);
        assert!(state.list_all().is_empty());
    }
}
