//! Phonefarm flows: driving a phone's apps the way a person would, through the ADB shell.
//!
//! The crate reads the screen with `uiautomator dump` ([`dump`]), finds views with data-driven
//! [`selector`]s, acts with `input`/`am`/`monkey` ([`ui`]), and knows each app version's screens,
//! selectors and pop-up watchers from TOML flow packs ([`pack`]). It does no I/O itself: every
//! phone interaction goes through the [`Device`] trait, which the agent's phone actor implements
//! over ADB and tests implement over the in-process phone model.

pub mod device;
pub mod dump;

pub use device::{Device, DeviceError, ShellOutput};
pub use dump::{Bounds, DumpError, Node, UiTree, extract_dump_xml, parse_dump, parse_dump_bytes};
pub mod selector;
pub mod text;
pub mod version;

pub use selector::{Fallbacks, Match, Selector};
pub use version::{Version, VersionRange};
pub mod ui;

pub use ui::{Screen, Ui, UiConfig, UiError};
pub mod pack;

pub use pack::{FlowPack, Identified, PackError, PackProblem, PackSet, PackStore};
