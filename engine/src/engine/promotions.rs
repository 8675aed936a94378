//! Promotions: putting an HNSW configuration in effect and rolling it back.

use crate::error::Error;
use crate::event::{ConfigPromoted, EventBody, PromotionRolledBack};
use crate::projection::promotions::{IndexPromotions, Promotion, PromotionState};
use crate::sync::read;
use crate::validate;

use super::*;

impl Engine {
    /// Promote `config` to serve `index`: the promotion in effect (if any) moves onto
    /// the index's history (at most [`crate::projection::promotions::HISTORY_MAX`],
    /// oldest dropped). Durable and applied when it returns. A new `m` or
    /// `ef_construction` starts a rebuild of the graph from its live vectors; searches
    /// use the old graph until the new one is complete and swapped in. A new
    /// `ef_search` alone applies to the next search.
    ///
    /// # Errors
    /// [`Error::Invalid`] for a bad config or text; [`Error::IndexNotFound`].
    pub fn promote(&self, actor: &str, index: &str, request: PromoteRequest) -> Result<Promotion, Error> {
        validate::actor(actor)?;
        validate::config(&request.config)?;
        validate::text("trial_id", &request.trial_id, true)?;
        validate::text("promoted_by", &request.promoted_by, false)?;
        validate::text("note", &request.note, true)?;
        let _one = crate::sync::lock(&self.promoting);
        let seq = {
            let schema = read(self.writable_schema()?);
            let Some(entry) = schema.get(index) else {
                return Err(Error::IndexNotFound { name: index.to_owned() });
            };
            validate::storage(&request.config, entry.dimension, entry.metric)?;
            // The evidence must exist: a trial of this index (or none at all).
            if !request.trial_id.is_empty() && !self.trials.has_trial(index, &request.trial_id) {
                return Err(validate::InvalidInput {
                    field: "trial_id".into(),
                    reason: format!("index {index:?} has no trial {:?}", request.trial_id),
                }
                .into());
            }
            let PromoteRequest { config, trial_id, promoted_by, note } = request;
            let body = EventBody::ConfigPromoted(ConfigPromoted {
                index: index.to_owned(),
                config,
                trial_id,
                promoted_by,
                note,
            });
            self.append(actor, body)?
        };
        self.wait_applied(seq)?;
        self.promotions.current(index).filter(|p| p.seq == seq).ok_or_else(|| Error::IndexNotFound {
            name: index.to_owned(), // dropped between the append and now
        })
    }

    /// Roll back the promotion in effect for `index`: the one before it (from the
    /// history) is in effect again, or, with no history, the index's creation config.
    /// Returns the promotion now in effect, if any.
    ///
    /// # Errors
    /// [`Error::NothingPromoted`] when no promotion is in effect; [`Error::IndexNotFound`].
    pub fn rollback(&self, actor: &str, index: &str) -> Result<Option<Promotion>, Error> {
        validate::actor(actor)?;
        let _one = crate::sync::lock(&self.promoting);
        let seq = {
            let schema = read(self.writable_schema()?);
            if schema.get(index).is_none() {
                return Err(Error::IndexNotFound { name: index.to_owned() });
            }
            // Every promotion and rollback before this one is applied (they hold
            // `promoting` until then), so the state is current for this index.
            if self.promotions.current(index).is_none() {
                return Err(Error::NothingPromoted { name: index.to_owned() });
            }
            let body = EventBody::PromotionRolledBack(PromotionRolledBack { index: index.to_owned() });
            self.append(actor, body)?
        };
        self.wait_applied(seq)?;
        Ok(self.promotions.current(index))
    }

    /// The promotion state of `index`: the promotion in effect and the history.
    ///
    /// # Errors
    /// [`Error::IndexNotFound`].
    pub fn promotion(&self, index: &str) -> Result<IndexPromotions, Error> {
        self.index(index)?;
        Ok(self.promotions.get(index))
    }

    /// The promotion state projection: `current`, `config_or`, `list_all`.
    pub fn promotions(&self) -> &PromotionState {
        &self.promotions
    }
}
