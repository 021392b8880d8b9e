//! The legacy bodies: `POST /ingest`, `POST /cancel`, `POST /runtime-snapshots/upsert`.

use serde_json::{Value, json};

use crate::domain::check::{Checker, MISSING, Reported};

/// POST /ingest (legacy post_video).
#[derive(Debug, Clone, PartialEq)]
pub struct IngestRequest {
    pub content_id: String,
    pub account_id: String,
    pub video_path: String,
    pub caption: String,
    pub hashtags: Vec<String>,
    pub sound_id: Option<String>,
    pub cover_image_path: Option<String>,
    pub callback_url: Option<String>,
    pub scheduling_hint: Option<time::OffsetDateTime>,
    pub metadata: Value,
}

impl IngestRequest {
    /// The inputs the post_video executor receives.
    pub fn inputs(&self) -> Value {
        json!({
            "content_id": self.content_id,
            "video_path": self.video_path,
            "caption": self.caption,
            "hashtags": self.hashtags,
            "sound_id": self.sound_id,
            "cover_image_path": self.cover_image_path,
        })
    }
}

pub fn ingest(body: &Value) -> Result<IngestRequest, Vec<String>> {
    let mut c = Checker::default();
    let Some(obj) = c.root(body) else {
        return Err(c.errors);
    };
    let content_id = c.req_str(obj, "content_id", "", 1, 200);
    let account_id = c.req_str(obj, "account_id", "", 1, 200);
    let video_path = c
        .req_str(obj, "video_path", "", 1, 4096)
        .and_then(|u| c.url(u, "video_path"));
    let caption = c.req_str(obj, "caption", "", 1, 4000);
    let hashtags = c.opt_str_array(obj, "hashtags", "", (1, 200), 30);
    let sound_id = c.opt_str(obj, "sound_id", "", 1, 200);
    let cover = match c.opt_str(obj, "cover_image_path", "", 1, 4096) {
        Ok(Some(u)) => c.url(u, "cover_image_path").map(Some).ok_or(Reported),
        other => other,
    };
    let callback_url = match c.opt_str(obj, "callback_url", "", 1, 2048) {
        Ok(Some(u)) => c.url(u, "callback_url").map(Some).ok_or(Reported),
        other => other,
    };
    let hint = match c.opt_str(obj, "scheduling_hint", "", 1, 100) {
        Ok(Some(s)) => c.timestamp(&s, "scheduling_hint").map(Some).ok_or(Reported),
        Ok(None) => Ok(None),
        Err(Reported) => Err(Reported),
    };
    let metadata = c.opt_obj(obj, "metadata", "");
    match (
        content_id,
        account_id,
        video_path,
        caption,
        hashtags,
        sound_id,
        cover,
        callback_url,
        hint,
        metadata,
    ) {
        (
            Some(content_id),
            Some(account_id),
            Some(video_path),
            Some(caption),
            Ok(hashtags),
            Ok(sound_id),
            Ok(cover_image_path),
            Ok(callback_url),
            Ok(scheduling_hint),
            Some(metadata),
        ) if c.is_ok() => Ok(IngestRequest {
            content_id,
            account_id,
            video_path,
            caption,
            hashtags: hashtags.unwrap_or_default(),
            sound_id,
            cover_image_path,
            callback_url,
            scheduling_hint,
            metadata,
        }),
        _ => Err(c.errors),
    }
}

/// POST /cancel (legacy).
pub fn legacy_cancel(body: &Value) -> Result<(String, String, Option<String>), Vec<String>> {
    let mut c = Checker::default();
    let Some(obj) = c.root(body) else {
        return Err(c.errors);
    };
    let content_id = c.req_str(obj, "content_id", "", 1, 200);
    let account_id = c.req_str(obj, "account_id", "", 1, 200);
    let reason = c.opt_str(obj, "reason", "", 0, 500);
    match (content_id, account_id, reason) {
        (Some(a), Some(b), Ok(r)) if c.is_ok() => Ok((a, b, r)),
        _ => Err(c.errors),
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub account_id: String,
    pub ugc_account_id: String,
    pub snapshot_id: String,
    pub strategy_version: i64,
    pub content_hash: String,
    pub strategy_synced_at: time::OffsetDateTime,
    pub stage: String,
    pub active_action: String,
    pub active_skills: Vec<String>,
    pub personality: Value,
}

pub fn snapshot(body: &Value) -> Result<Snapshot, Vec<String>> {
    let mut c = Checker::default();
    let Some(obj) = c.root(body) else {
        return Err(c.errors);
    };
    let account_id = c.req_str(obj, "account_id", "", 1, 200);
    let ugc = c.req_str(obj, "ugc_account_id", "", 1, 200);
    let snapshot_id = c.req_str(obj, "snapshot_id", "", 1, 200);
    let version = c.req_int(obj, "strategy_version", "", 1, i64::MAX);
    let content_hash = c.req_str(obj, "content_hash", "", 1, 200);
    let synced = c
        .req_str(obj, "strategy_synced_at", "", 1, 100)
        .and_then(|s| c.timestamp(&s, "strategy_synced_at"));
    let stage = c.req_str(obj, "stage", "", 0, 200);
    let action = c.req_str(obj, "active_action", "", 0, 200);
    let skills = match c.opt_str_array(obj, "active_skills", "", (0, 200), 1000) {
        Ok(Some(s)) => Some(s),
        Ok(None) => {
            c.push(MISSING, "active_skills");
            None
        }
        Err(Reported) => None,
    };
    let personality = c
        .req_obj(obj, "personality", "")
        .map(|m| Value::Object(m.clone()));
    match (
        account_id,
        ugc,
        snapshot_id,
        version,
        content_hash,
        synced,
        stage,
        action,
        skills,
        personality,
    ) {
        (
            Some(account_id),
            Some(ugc_account_id),
            Some(snapshot_id),
            Some(strategy_version),
            Some(content_hash),
            Some(strategy_synced_at),
            Some(stage),
            Some(active_action),
            Some(active_skills),
            Some(personality),
        ) if c.is_ok() => Ok(Snapshot {
            account_id,
            ugc_account_id,
            snapshot_id,
            strategy_version,
            content_hash,
            strategy_synced_at,
            stage,
            active_action,
            active_skills,
            personality,
        }),
        _ => Err(c.errors),
    }
}
