//! Flow packs: everything version-specific about an app's UI, as data.
//!
//! A pack is one TOML file keyed by app package and a version range. It names every selector the
//! flows use (each an ordered list of fallbacks), the screen signatures that tell screens apart
//! (checked in file order, the first whose signature holds wins), and pop-up watchers (update
//! prompts, permission dialogs), each a `match` selector and a `dismiss` selector, checked before
//! any screen. Packs are validated when loaded; every problem in a file is reported at once.
//!
//! ```toml
//! [pack]
//! name = "tiktok-32"
//! package = "com.zhiliaoapp.musically"
//! versions = ">=32.0.0, <33.0.0"
//!
//! [selectors]
//! like_button = [{ resource_id = "com.zhiliaoapp.musically:id/like_button" }, { content_desc = "Like", clickable = true }]
//!
//! [[screens]]
//! name = "feed"
//! all = ["top_foryou", "feed_pager"]
//!
//! [[watchers]]
//! name = "update_prompt"
//! match = "update_dialog"
//! dismiss = "update_dismiss"
//! ```
//!
//! A [`PackSet`] holds the packs of a fleet and picks one for a package and installed version;
//! a [`PackStore`] lets the agent swap in a new set at run time (runs in progress keep the pack
//! they started with).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;
use std::sync::{Arc, RwLock};

use serde::Deserialize;

use crate::device::Device;
use crate::dump::UiTree;
use crate::selector::{Fallbacks, Match};
use crate::ui::{Screen, Ui, UiError};
use crate::version::{Version, VersionRange};

/// Screens that mean the account, not the flow, is the problem.
pub const ACCOUNT_OUTCOME_SCREENS: &[&str] = &[
    "logged_out",
    "session_expired",
    "banned",
    "suspended",
    "captcha",
    "verification_required",
    "rate_limited",
];

/// One problem found while validating a pack.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PackProblem {
    #[error("bad package name {0:?}")]
    BadPackage(String),
    #[error("bad version range: {0}")]
    BadVersionRange(String),
    #[error("selector {name:?}: {reason}")]
    BadSelector { name: String, reason: String },
    #[error("{context} references unknown selector {selector:?}")]
    UnknownSelector { context: String, selector: String },
    #[error("duplicate screen {0:?}")]
    DuplicateScreen(String),
    #[error("duplicate watcher {0:?}")]
    DuplicateWatcher(String),
    #[error("watcher {name:?}: {reason}")]
    BadWatcher { name: String, reason: String },
    #[error("screen {0:?} has an empty signature (give `all` or `any`)")]
    EmptySignature(String),
    #[error("missing selector {0:?}")]
    MissingSelector(String),
    #[error("missing screen {0:?}")]
    MissingScreen(String),
}

/// Why packs could not be loaded or chosen.
#[derive(Debug, thiserror::Error)]
pub enum PackError {
    /// The I/O error is in the message (not a `source`), so a `{:#}` chain says it once.
    #[error("reading {path}: {error}")]
    Io { path: String, error: std::io::Error },
    #[error("{origin}: {message}")]
    Toml { origin: String, message: String },
    #[error("{origin}: {}", join(problems))]
    Invalid {
        origin: String,
        problems: Vec<PackProblem>,
    },
    #[error(
        "packs {first} and {second} both cover {package} for overlapping versions ({first_range} / {second_range})"
    )]
    Overlap {
        package: String,
        first: String,
        first_range: String,
        second: String,
        second_range: String,
    },
    #[error("two packs are named {0:?}")]
    DuplicateName(String),
    #[error("no flow pack for {package} {version}")]
    NoPack { package: String, version: String },
}

fn join(problems: &[PackProblem]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PackFile {
    pack: Header,
    #[serde(default)]
    selectors: BTreeMap<String, Fallbacks>,
    #[serde(default)]
    screens: Vec<ScreenDef>,
    #[serde(default)]
    watchers: Vec<Watcher>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    name: String,
    package: String,
    versions: String,
    #[serde(default)]
    revision: u32,
    #[serde(default)]
    description: String,
}

/// A screen and the selectors that identify it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScreenDef {
    pub name: String,
    /// Every one of these must match.
    #[serde(default)]
    pub all: Vec<String>,
    /// At least one of these must match (when non-empty).
    #[serde(default)]
    pub any: Vec<String>,
    /// None of these may match.
    #[serde(default)]
    pub none: Vec<String>,
}

/// A pop-up that can appear anywhere, and how to get rid of it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Watcher {
    pub name: String,
    /// Selector name: the pop-up is showing when it matches.
    #[serde(rename = "match")]
    pub matches: String,
    /// Selector name: tapped (or swiped up inside, see `action`) to dismiss the pop-up.
    pub dismiss: String,
    /// Selector name: tapped instead of `dismiss` when the pop-up comes back in the same run
    /// ("isn't responding": `Wait` once, then `Close app`).
    #[serde(default)]
    pub again: Option<String>,
    /// A runtime permission prompt: the permission it asks for. `dismiss` (allow) is tapped only
    /// when the running flow needs it, `deny` otherwise.
    #[serde(default)]
    pub permission: Option<String>,
    /// Selector name: refuses a permission the flow does not need.
    #[serde(default)]
    pub deny: Option<String>,
    /// `tap` (the default) or `swipe_up` inside the `dismiss` view (the lock screen).
    #[serde(default)]
    pub action: WatcherAction,
}

/// How a watcher acts on its `dismiss` view.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WatcherAction {
    #[default]
    Tap,
    SwipeUp,
}

/// How often each watcher fired in one run (for `again`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PopupMemory {
    seen: BTreeMap<String, u32>,
}

impl PopupMemory {
    /// Times the named watcher fired so far.
    pub fn seen(&self, watcher: &str) -> u32 {
        self.seen.get(watcher).copied().unwrap_or(0)
    }

    /// Pop-ups dismissed so far in the run, of every watcher.
    pub fn total(&self) -> u32 {
        self.seen.values().sum()
    }
}

/// What the current screen is, according to a pack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Identified<'p> {
    /// A pop-up is showing: dismiss it and look again.
    Popup(&'p Watcher),
    Screen(&'p ScreenDef),
    /// No watcher and no screen signature matches.
    Unknown,
}

impl Identified<'_> {
    /// `"popup:<name>"`, the screen name, or `"unknown"`: for logs and failure reasons.
    pub fn label(&self) -> String {
        match self {
            Identified::Popup(w) => format!("popup:{}", w.name),
            Identified::Screen(s) => s.name.clone(),
            Identified::Unknown => "unknown".into(),
        }
    }

    pub fn is(&self, screen: &str) -> bool {
        matches!(self, Identified::Screen(s) if s.name == screen)
    }
}

/// A validated flow pack.
#[derive(Debug, Clone)]
pub struct FlowPack {
    name: String,
    package: String,
    range: VersionRange,
    revision: u32,
    description: String,
    selectors: BTreeMap<String, Fallbacks>,
    screens: Vec<ScreenDef>,
    watchers: Vec<Watcher>,
    origin: String,
}

fn valid_package(p: &str) -> bool {
    !p.is_empty()
        && p.split('.').all(|seg| {
            !seg.is_empty() && seg.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        })
}

impl FlowPack {
    /// Parses and validates one pack; `origin` (a file name or KV key) prefixes every error.
    pub fn from_toml_str(origin: &str, text: &str) -> Result<Self, PackError> {
        let file: PackFile = toml::from_str(text).map_err(|e| PackError::Toml {
            origin: origin.to_string(),
            message: e.to_string().trim_end().to_string(),
        })?;
        let mut problems = Vec::new();
        if !valid_package(&file.pack.package) {
            problems.push(PackProblem::BadPackage(file.pack.package.clone()));
        }
        let range = match file.pack.versions.parse::<VersionRange>() {
            Ok(r) => Some(r),
            Err(e) => {
                problems.push(PackProblem::BadVersionRange(e.to_string()));
                None
            }
        };
        for (name, fallbacks) in &file.selectors {
            if let Err(reason) = fallbacks.validate() {
                problems.push(PackProblem::BadSelector {
                    name: name.clone(),
                    reason,
                });
            }
        }
        let refs = |context: String, name: &str, problems: &mut Vec<PackProblem>| {
            if !file.selectors.contains_key(name) {
                problems.push(PackProblem::UnknownSelector {
                    context,
                    selector: name.into(),
                });
            }
        };
        let mut seen = BTreeSet::new();
        for screen in &file.screens {
            if !seen.insert(screen.name.as_str()) {
                problems.push(PackProblem::DuplicateScreen(screen.name.clone()));
            }
            if screen.all.is_empty() && screen.any.is_empty() {
                problems.push(PackProblem::EmptySignature(screen.name.clone()));
            }
            for name in screen.all.iter().chain(&screen.any).chain(&screen.none) {
                refs(format!("screen {:?}", screen.name), name, &mut problems);
            }
        }
        let mut seen = BTreeSet::new();
        for w in &file.watchers {
            if !seen.insert(w.name.as_str()) {
                problems.push(PackProblem::DuplicateWatcher(w.name.clone()));
            }
            refs(format!("watcher {:?}", w.name), &w.matches, &mut problems);
            refs(format!("watcher {:?}", w.name), &w.dismiss, &mut problems);
            for extra in [&w.again, &w.deny].into_iter().flatten() {
                refs(format!("watcher {:?}", w.name), extra, &mut problems);
            }
            if w.permission.is_some() != w.deny.is_some() {
                problems.push(PackProblem::BadWatcher {
                    name: w.name.clone(),
                    reason: "`permission` and `deny` go together".into(),
                });
            }
        }
        match range {
            Some(range) if problems.is_empty() => Ok(Self {
                name: file.pack.name,
                package: file.pack.package,
                range,
                revision: file.pack.revision,
                description: file.pack.description,
                selectors: file.selectors,
                screens: file.screens,
                watchers: file.watchers,
                origin: origin.to_string(),
            }),
            _ => Err(PackError::Invalid {
                origin: origin.to_string(),
                problems,
            }),
        }
    }

    /// Reads and validates one pack file.
    pub fn load(path: &Path) -> Result<Self, PackError> {
        let text = std::fs::read_to_string(path).map_err(|error| PackError::Io {
            path: path.display().to_string(),
            error,
        })?;
        Self::from_toml_str(&path.display().to_string(), &text)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn package(&self) -> &str {
        &self.package
    }

    pub fn versions(&self) -> &VersionRange {
        &self.range
    }

    pub fn revision(&self) -> u32 {
        self.revision
    }

    pub fn description(&self) -> &str {
        &self.description
    }

    /// Where the pack came from (file path or KV key).
    pub fn origin(&self) -> &str {
        &self.origin
    }

    pub fn screens(&self) -> &[ScreenDef] {
        &self.screens
    }

    pub fn watchers(&self) -> &[Watcher] {
        &self.watchers
    }

    pub fn selector(&self, name: &str) -> Option<&Fallbacks> {
        self.selectors.get(name)
    }

    pub fn selector_names(&self) -> impl Iterator<Item = &str> {
        self.selectors.keys().map(String::as_str)
    }

    pub fn has_screen(&self, name: &str) -> bool {
        self.screens.iter().any(|s| s.name == name)
    }

    /// Finds the named view; None if the name is unknown or nothing matches.
    pub fn find(&self, tree: &UiTree, selector: &str) -> Option<Match> {
        self.selectors.get(selector)?.find(tree)
    }

    /// Every node the named selector finds (first alternative that finds any).
    pub fn find_all(&self, tree: &UiTree, selector: &str) -> Vec<usize> {
        self.selectors
            .get(selector)
            .map(|f| f.find_all(tree))
            .unwrap_or_default()
    }

    fn holds(&self, tree: &UiTree, screen: &ScreenDef) -> bool {
        let present = |n: &String| self.find(tree, n).is_some();
        screen.all.iter().all(present)
            && (screen.any.is_empty() || screen.any.iter().any(present))
            && !screen.none.iter().any(present)
    }

    /// The screen named `name` is showing (false for an unknown name).
    pub fn is_screen(&self, tree: &UiTree, name: &str) -> bool {
        self.screens
            .iter()
            .find(|s| s.name == name)
            .is_some_and(|s| self.holds(tree, s))
    }

    /// Watchers first, then screens in file order.
    pub fn identify(&self, tree: &UiTree) -> Identified<'_> {
        if let Some(w) = self
            .watchers
            .iter()
            .find(|w| self.find(tree, &w.matches).is_some())
        {
            return Identified::Popup(w);
        }
        match self.screens.iter().find(|s| self.holds(tree, s)) {
            Some(s) => Identified::Screen(s),
            None => Identified::Unknown,
        }
    }

    /// Checks that the pack defines what a flow needs; every missing name is reported.
    pub fn require(&self, selectors: &[&str], screens: &[&str]) -> Result<(), PackError> {
        let mut problems: Vec<PackProblem> = selectors
            .iter()
            .filter(|s| !self.selectors.contains_key(**s))
            .map(|s| PackProblem::MissingSelector((*s).to_string()))
            .collect();
        problems.extend(
            screens
                .iter()
                .filter(|s| !self.has_screen(s))
                .map(|s| PackProblem::MissingScreen((*s).to_string())),
        );
        if problems.is_empty() {
            Ok(())
        } else {
            Err(PackError::Invalid {
                origin: self.origin.clone(),
                problems,
            })
        }
    }
}

impl fmt::Display for FlowPack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} r{} ({} {})",
            self.name, self.revision, self.package, self.range
        )
    }
}

/// Reads the current screen and names it with `pack`, dismissing pop-ups first: while a watcher
/// matches, its `dismiss` view is tapped and the screen read again (at most `max_popups` times,
/// then [`UiError::PopupStuck`]). Dumps that fail transiently are retried until `deadline`.
/// Returns the screen and its label (a screen name, or `unknown`).
pub async fn read_screen<D: Device>(
    ui: &Ui<D>,
    pack: &FlowPack,
    deadline: std::time::Duration,
    max_popups: u32,
) -> Result<(Screen, String), UiError> {
    let mut memory = PopupMemory::default();
    read_screen_with(ui, pack, deadline, max_popups, &[], &mut memory).await
}

/// [`read_screen`] for a run: permission prompts are allowed only for the permissions in
/// `needs` (refused otherwise), and a watcher with `again` takes that view the second time it
/// fires in the run (`memory` counts).
pub async fn read_screen_with<D: Device>(
    ui: &Ui<D>,
    pack: &FlowPack,
    deadline: std::time::Duration,
    max_popups: u32,
    needs: &[&str],
    memory: &mut PopupMemory,
) -> Result<(Screen, String), UiError> {
    let mut popups = 0;
    loop {
        let (screen, ()) = ui
            .wait_until("a readable screen", deadline, |_| Some(()))
            .await?;
        let w = match pack.identify(&screen.tree) {
            Identified::Popup(w) => w,
            other => return Ok((screen, other.label())),
        };
        if popups >= max_popups {
            return Err(UiError::PopupStuck(w.name.clone()));
        }
        popups += 1;
        let seen = memory.seen.entry(w.name.clone()).or_default();
        *seen += 1;
        let target = match (&w.permission, &w.deny, &w.again) {
            (Some(p), Some(deny), _) if !needs.contains(&p.as_str()) => deny,
            (_, _, Some(again)) if *seen > 1 => again,
            _ => &w.dismiss,
        };
        tracing::info!(popup = %w.name, with = %target, "dismissing pop-up");
        let view = pack.selector(target).ok_or_else(|| UiError::NotFound {
            what: target.clone(),
        })?;
        match w.action {
            WatcherAction::Tap => {
                ui.tap_in(&screen.tree, view, target).await?;
            }
            WatcherAction::SwipeUp => {
                let m = view.find(&screen.tree).ok_or_else(|| UiError::NotFound {
                    what: target.clone(),
                })?;
                if let Some(node) = screen.tree.get(m.node) {
                    ui.swipe_up_in(node.bounds).await?;
                }
            }
        }
        ui.pause().await;
    }
}

/// The packs of a fleet: at most one per package and version.
#[derive(Debug, Clone, Default)]
pub struct PackSet {
    packs: Vec<Arc<FlowPack>>,
}

impl PackSet {
    /// Rejects duplicate names and overlapping ranges for the same package.
    pub fn new(packs: Vec<FlowPack>) -> Result<Self, PackError> {
        for (i, a) in packs.iter().enumerate() {
            for b in &packs[i + 1..] {
                if a.name == b.name {
                    return Err(PackError::DuplicateName(a.name.clone()));
                }
                if a.package == b.package && a.range.overlaps(&b.range) {
                    return Err(PackError::Overlap {
                        package: a.package.clone(),
                        first: a.name.clone(),
                        first_range: a.range.to_string(),
                        second: b.name.clone(),
                        second_range: b.range.to_string(),
                    });
                }
            }
        }
        Ok(Self {
            packs: packs.into_iter().map(Arc::new).collect(),
        })
    }

    /// Packs from `(origin, toml text)` pairs (files, or KV entries pushed by the coordinator).
    pub fn from_sources<'a>(
        sources: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, PackError> {
        let packs = sources
            .into_iter()
            .map(|(origin, text)| FlowPack::from_toml_str(origin, text))
            .collect::<Result<Vec<_>, _>>()?;
        Self::new(packs)
    }

    /// Every `*.toml` in `dir` (not recursive), or the single file `dir` points at.
    pub fn load_path(path: &Path) -> Result<Self, PackError> {
        let io = |error| PackError::Io {
            path: path.display().to_string(),
            error,
        };
        if path.is_file() {
            return Self::new(vec![FlowPack::load(path)?]);
        }
        let mut files: Vec<_> = std::fs::read_dir(path)
            .map_err(io)?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()
            .map_err(io)?;
        files.retain(|p| p.extension().is_some_and(|e| e == "toml") && p.is_file());
        files.sort();
        Self::new(
            files
                .iter()
                .map(|p| FlowPack::load(p))
                .collect::<Result<_, _>>()?,
        )
    }

    pub fn packs(&self) -> &[Arc<FlowPack>] {
        &self.packs
    }

    /// The pack for `package` at `version`.
    pub fn select(&self, package: &str, version: &Version) -> Result<Arc<FlowPack>, PackError> {
        self.packs
            .iter()
            .find(|p| p.package == package && p.range.matches(version))
            .cloned()
            .ok_or_else(|| PackError::NoPack {
                package: package.to_string(),
                version: version.to_string(),
            })
    }
}

/// The current pack set, replaceable at run time. Readers take a snapshot (`Arc`), so a reload
/// never disturbs a run that already chose its pack.
#[derive(Debug, Default)]
pub struct PackStore {
    current: RwLock<Arc<PackSet>>,
}

impl PackStore {
    pub fn new(set: PackSet) -> Self {
        Self {
            current: RwLock::new(Arc::new(set)),
        }
    }

    pub fn snapshot(&self) -> Arc<PackSet> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn replace(&self, set: PackSet) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(set);
    }

    /// Loads `path` and swaps it in; on any error the current set stays.
    pub fn reload(&self, path: &Path) -> Result<(), PackError> {
        let set = PackSet::load_path(path)?;
        self.replace(set);
        Ok(())
    }
}

#[cfg(test)]
mod tests;
