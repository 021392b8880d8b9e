//! Phonefarm flows: driving a phone's apps the way a person would, through the ADB shell.
//!
//! The crate reads the screen with `uiautomator dump` ([`dump`]), finds views with data-driven
//! [`selector`]s (ordered fallbacks), acts with `input`/`am`/`monkey` ([`ui`], with [`text`]
//! escaping for `input text`), and knows each app version's screens, selectors and pop-up
//! watchers from TOML flow packs ([`pack`], chosen by package and installed [`version`]). On top
//! of that, [`flows`] holds the capability executors (`keyword_warmup`, `fyp_warmup`,
//! `edit_profile`, `post_video`) with milestones, cancellation, typed failure reasons and
//! evidence.
//!
//! It does no I/O itself: every phone interaction goes through the [`Device`] trait (shell and
//! push), which the agent's phone actor implements over ADB and tests implement over the
//! in-process phone model. Nothing here panics on any input.

pub mod device;
pub mod dump;
pub mod flows;
pub mod pack;
pub mod quoted;
pub mod selector;
pub mod text;
pub mod ui;
pub mod version;

pub use device::{Device, DeviceError, ShellOutput};
pub use dump::{Bounds, DumpError, Node, UiTree, extract_dump_xml, parse_dump, parse_dump_bytes};
pub use flows::{FlowCtx, FlowError, FlowFailure, FlowOptions, MilestoneSink};
pub use pack::{FlowPack, Identified, PackError, PackProblem, PackSet, PackStore};
pub use selector::{Fallbacks, Match, Selector};
pub use ui::{Screen, Ui, UiConfig, UiError, UiStats};
pub use version::{Version, VersionRange};
