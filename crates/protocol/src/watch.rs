//! `fs/watchMissing` and its `fs/missingChanged` notification: tell the client once when
//! one of a set of missing paths (or a missing directory on the way to one) appears.
//!
//! A connection has at most one watch. A call with a `watchId` above every earlier one
//! replaces it; a call with an id at or below an earlier one changes nothing and answers
//! `watching: false`.

use crate::PathUri;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WatchMissingParams {
    pub watch_id: u64,
    pub missing: Vec<PathUri>,
}

/// `watching: false`: no watch was set up (a path exists already, cannot be created, or
/// the id is stale), so no notification will come for this id.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WatchMissingResult {
    pub watching: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MissingChanged {
    pub watch_id: u64,
}
