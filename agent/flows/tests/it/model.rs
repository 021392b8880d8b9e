//! The in-process phone model as a [`Device`], plus helpers.

#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use phonefarm_flows::device::{Device, DeviceError, ShellOutput};
use phonefarm_flows::pack::PackSet;
use phonefarm_flows::{FlowPack, Ui, UiConfig};
use phonefarm_phonemodel::{Identity, Phone, PhoneConfig, UiVariant};

/// `shell` → `Phone::shell`, `push` → `Phone::write`.
#[derive(Debug)]
pub struct ModelDevice {
    phone: Mutex<Phone>,
    /// Calls fail once the phone holds more posts than this (`usize::MAX`: never).
    cut_after_posts: AtomicUsize,
}

impl ModelDevice {
    pub fn new(config: PhoneConfig) -> Self {
        Self {
            phone: Mutex::new(Phone::with_config(Identity::default(), config)),
            cut_after_posts: AtomicUsize::new(usize::MAX),
        }
    }

    /// From the moment the phone holds more than `posts` posts, every call fails as if the link
    /// had dropped (`None`: never): a run that dies right after publishing.
    pub fn cut_link_after_posts(&self, posts: Option<usize>) {
        self.cut_after_posts
            .store(posts.unwrap_or(usize::MAX), Ordering::SeqCst);
    }

    fn link(&self) -> Result<(), DeviceError> {
        let limit = self.cut_after_posts.load(Ordering::SeqCst);
        if limit != usize::MAX && self.phone().posts().len() > limit {
            return Err(DeviceError::Disconnected("link cut by the test".into()));
        }
        Ok(())
    }

    pub fn variant(variant: UiVariant) -> Self {
        Self::new(PhoneConfig {
            variant,
            ..PhoneConfig::default()
        })
    }

    pub fn phone(&self) -> MutexGuard<'_, Phone> {
        self.phone.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Device for ModelDevice {
    async fn shell(&self, cmd: &str, _deadline: Duration) -> Result<ShellOutput, DeviceError> {
        self.link()?;
        let out = self.phone().shell(cmd);
        Ok(ShellOutput {
            stdout: out.stdout,
            stderr: out.stderr,
            exit: out.exit,
        })
    }

    async fn push(&self, data: Vec<u8>, remote: &str, mode: u32) -> Result<(), DeviceError> {
        self.link()?;
        let mut phone = self.phone();
        let mtime = phone.config().clock;
        phone
            .write(remote, data, mode, mtime)
            .map_err(DeviceError::Transport)
    }
}

pub fn ui(device: &ModelDevice) -> Ui<&ModelDevice> {
    Ui::new(
        device,
        UiConfig {
            poll_interval: Duration::from_millis(200),
            ..UiConfig::default()
        },
    )
}

/// The shipped pack for the phone's installed app version, chosen as the agent does.
pub async fn pack_for(device: &ModelDevice) -> std::sync::Arc<FlowPack> {
    let set = PackSet::load_path(&crate::packs::packs_dir()).unwrap();
    let version = ui(device)
        .installed_version(crate::packs::APP)
        .await
        .unwrap();
    set.select(crate::packs::APP, &version).unwrap()
}

pub const VARIANTS: [UiVariant; 2] = [UiVariant::A, UiVariant::B];
