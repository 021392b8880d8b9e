//! `maintenance` / `edit_profile`: open the own profile, edit display name, username and bio as
//! given, save, and read back what the profile shows. A username the app reports as taken ends
//! the run with `account_outcome:username_taken`.
//!
//! Result: `{"profile": {"display_name": "…", "username": "…", "bio": "…"}}`.

use serde::Deserialize;
use serde_json::json;

use super::run::step;
use super::{
    AccountOutcome, FlowCtx, FlowError, FlowFailure, MilestoneSink, Run, by, require, text_of,
    typeable,
};
use crate::device::Device;
use crate::pack::FlowPack;
use crate::ui::Screen;
use crate::ui::keycode;

/// `params` of an `edit_profile` step.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct EditProfileParams {
    pub display_name: Option<String>,
    pub bio: Option<String>,
    pub username: Option<String>,
    pub mutation_kind: Option<String>,
    pub randomized: Option<bool>,
}

/// One maintenance step; `action` must be `edit_profile`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct MaintenanceStep {
    pub action: String,
    pub params: EditProfileParams,
}

/// `maintenance.inputs` (their schema: the coordinator's OpenAPI document, `/openapi.json`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct MaintenanceInputs {
    pub steps: Vec<MaintenanceStep>,
    #[serde(default)]
    pub metadata: Option<serde_json::Value>,
}

impl MaintenanceInputs {
    pub fn validate(&self) -> Result<(), FlowError> {
        let bad = |what: &str, msg: String| {
            Err(FlowError::new(FlowFailure::InvalidInput(what.into()), msg))
        };
        if self.steps.is_empty() || self.steps.len() > 10 {
            return bad("steps", "1..10 steps are required".into());
        }
        for (i, step) in self.steps.iter().enumerate() {
            if step.action != "edit_profile" {
                return bad(
                    "action",
                    format!("step {i}: unknown action {:?}", step.action),
                );
            }
            let p = &step.params;
            if p.display_name.is_none() && p.bio.is_none() && p.username.is_none() {
                return bad("params", format!("step {i}: nothing to edit"));
            }
            if let Some(n) = &p.display_name {
                if n.is_empty() || n.chars().count() > 30 {
                    return bad(
                        "display_name",
                        format!("step {i}: display_name must be 1..30"),
                    );
                }
                typeable("display_name", n)?;
            }
            if let Some(b) = &p.bio {
                if b.chars().count() > 80 {
                    return bad("bio", format!("step {i}: bio must be 0..80"));
                }
                typeable("bio", b)?;
            }
            if let Some(u) = &p.username {
                let ok = (2..=24).contains(&u.len())
                    && u.bytes().all(|c| {
                        c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'.' || c == b'_'
                    });
                if !ok {
                    return bad(
                        "username",
                        format!("step {i}: username must be 2..24 of [a-z0-9._]"),
                    );
                }
            }
        }
        Ok(())
    }
}

const SELECTORS: &[&str] = &[
    "tab_home",
    "tab_profile",
    "profile_edit",
    "profile_display_name",
    "profile_username",
    "profile_bio",
    "edit_name",
    "edit_username",
    "edit_bio",
    "edit_clear",
    "edit_error",
    "edit_save",
];

/// Runs the maintenance steps in order.
pub async fn edit_profile<D: Device, S: MilestoneSink + ?Sized>(
    ctx: &FlowCtx<'_, D, S>,
    inputs: &MaintenanceInputs,
) -> Result<serde_json::Value, FlowError> {
    inputs.validate()?;
    require(ctx.pack, SELECTORS)?;
    let mut run = Run::new(ctx, &[]);
    let run = &mut run;
    let mut profile = serde_json::Value::Null;
    for (i, step) in inputs.steps.iter().enumerate() {
        // Setting the same values again is harmless: a step interrupted anywhere starts over.
        let r = step!(run, format!("edit_profile:{}", i + 1), {
            edit_once(run, &step.params).await
        });
        match r {
            Ok(p) => {
                profile = p;
                run.ctx
                    .sink
                    .progress(&json!({"steps_done": i + 1, "profile": profile}));
            }
            Err(e) => return Err(run.fail(e, json!({ "profile": profile })).await),
        }
    }
    Ok(json!({ "profile": profile }))
}

async fn edit_once<D: Device, S: MilestoneSink + ?Sized>(
    run: &mut Run<'_, '_, D, S>,
    params: &EditProfileParams,
) -> Result<serde_json::Value, FlowError> {
    let feed = run.ensure_feed().await?;
    let profile = run.tap_to(&feed, "tab_profile", &["profile"]).await?;
    run.tap_to(&profile, "profile_edit", &["edit_profile"])
        .await?;
    let fields = [
        ("edit_name", &params.display_name),
        ("edit_username", &params.username),
        ("edit_bio", &params.bio),
    ];
    for (field, value) in fields {
        if let Some(value) = value {
            set_field(run, field, value).await?;
        }
    }
    let screen = run.expect(&["edit_profile"]).await?;
    // Saved (back on the profile) or rejected (an error under the form).
    let settled = |pack: &FlowPack, label: &str, s: &Screen| {
        label == "profile" || text_of(pack, &s.tree, "edit_error").is_some_and(|e| !e.is_empty())
    };
    let screen = run
        .tap_expect(
            &screen,
            by("edit_save"),
            &["profile", "edit_profile"],
            "the save to finish",
            settled,
        )
        .await?;
    if run.last_screen == "edit_profile" {
        let error = text_of(run.pack(), &screen.tree, "edit_error").unwrap_or_default();
        if error.contains("isn't available") {
            return Err(FlowError::new(
                FlowFailure::Account(AccountOutcome::UsernameTaken),
                error,
            ));
        }
        return Err(run.flow_error(format!("save rejected: {error}")));
    }
    let text = |name: &str| text_of(run.pack(), &screen.tree, name).unwrap_or_default();
    let username = text("profile_username");
    Ok(json!({
        "display_name": text("profile_display_name"),
        "username": username.strip_prefix('@').unwrap_or(&username),
        "bio": text("profile_bio"),
    }))
}

/// Focuses a field, empties it, types the value and checks the field shows it.
async fn set_field<D: Device, S: MilestoneSink + ?Sized>(
    run: &mut Run<'_, '_, D, S>,
    field: &str,
    value: &str,
) -> Result<(), FlowError> {
    let screen = run.expect(&["edit_profile"]).await?;
    let focused = |pack: &FlowPack, _: &str, s: &Screen| {
        pack.find(&s.tree, field)
            .and_then(|m| s.tree.get(m.node))
            .is_some_and(|n| n.focused)
    };
    let what = format!("{field} to take focus");
    let screen = run
        .tap_expect(&screen, by(field), &["edit_profile"], &what, focused)
        .await?;
    if run.pack().find(&screen.tree, "edit_clear").is_some() {
        let cleared =
            |pack: &FlowPack, _: &str, s: &Screen| pack.find(&s.tree, "edit_clear").is_none();
        let what = format!("{field} to clear");
        run.tap_expect(&screen, by("edit_clear"), &["edit_profile"], &what, cleared)
            .await?;
    } else {
        // No clear button: delete what the field shows (if that is its hint, the extra deletes
        // on an empty field do nothing).
        let n = run.node(&screen, field)?.text.chars().count();
        if n > 0 {
            run.keys(&vec![keycode::DEL; n]).await?;
        }
    }
    run.type_text(value).await?;
    if !value.is_empty() {
        let shows = |pack: &FlowPack, _: &str, s: &Screen| {
            text_of(pack, &s.tree, field).is_some_and(|t| t == value)
        };
        let what = format!("{field} to show the typed text");
        run.expect_where(&["edit_profile"], &what, shows).await?;
    }
    Ok(())
}
