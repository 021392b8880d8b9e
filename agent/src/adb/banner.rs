//! The CNXN banner (`host::features=...`, `device::ro.product.name=...;...;features=...`) and the
//! feature names both sides advertise.

use std::collections::BTreeSet;

pub const FEATURE_SHELL_V2: &str = "shell_v2";
pub const FEATURE_CMD: &str = "cmd";
pub const FEATURE_STAT_V2: &str = "stat_v2";
pub const FEATURE_LS_V2: &str = "ls_v2";
pub const FEATURE_FIXED_PUSH_MKDIR: &str = "fixed_push_mkdir";
pub const FEATURE_DELAYED_ACK: &str = "delayed_ack";

/// Features this host implements and advertises.
pub const HOST_FEATURES: &[&str] = &[
    FEATURE_SHELL_V2,
    FEATURE_CMD,
    FEATURE_STAT_V2,
    FEATURE_FIXED_PUSH_MKDIR,
    FEATURE_DELAYED_ACK,
];

/// Which end sent the banner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SystemType {
    Host,
    Device,
    Recovery,
    Bootloader,
    Sideload,
    Rescue,
    Other,
}

/// A parsed CNXN banner.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Banner {
    pub system_type: Option<SystemType>,
    pub serial: String,
    pub product: Option<String>,
    pub model: Option<String>,
    pub device: Option<String>,
    pub features: BTreeSet<String>,
}

impl Banner {
    /// The banner our host sends.
    pub fn host(features: &[&str]) -> String {
        format!("host::features={}", features.join(","))
    }

    /// A device banner as adbd builds it.
    pub fn device(product: &str, model: &str, device: &str, features: &[&str]) -> String {
        format!(
            "device::ro.product.name={product};ro.product.model={model};ro.product.device={device};features={}",
            features.join(",")
        )
    }

    /// Parses a banner payload (a trailing NUL is ignored). Unknown properties are skipped;
    /// nothing here fails, a malformed banner just yields fewer fields.
    pub fn parse(payload: &[u8]) -> Self {
        let text = String::from_utf8_lossy(payload);
        let text = text.trim_end_matches('\0');
        let mut parts = text.splitn(3, ':');
        let kind = parts.next().unwrap_or_default();
        let serial = parts.next().unwrap_or_default().to_string();
        let props = parts.next().unwrap_or_default();
        let system_type = match kind {
            "host" => Some(SystemType::Host),
            "device" => Some(SystemType::Device),
            "recovery" => Some(SystemType::Recovery),
            "bootloader" => Some(SystemType::Bootloader),
            "sideload" => Some(SystemType::Sideload),
            "rescue" => Some(SystemType::Rescue),
            "" => None,
            _ => Some(SystemType::Other),
        };
        let mut b = Banner {
            system_type,
            serial,
            ..Default::default()
        };
        for prop in props.split(';') {
            let Some((k, v)) = prop.split_once('=') else {
                continue;
            };
            match k {
                "ro.product.name" => b.product = Some(v.to_string()),
                "ro.product.model" => b.model = Some(v.to_string()),
                "ro.product.device" => b.device = Some(v.to_string()),
                "features" => {
                    b.features = v
                        .split(',')
                        .filter(|f| !f.is_empty())
                        .map(str::to_string)
                        .collect()
                }
                _ => {}
            }
        }
        b
    }

    pub fn has(&self, feature: &str) -> bool {
        self.features.contains(feature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_banner_round_trips() {
        let s = Banner::device(
            "sdk_phone",
            "Pixel 7",
            "panther",
            &["shell_v2", "cmd", "stat_v2"],
        );
        let b = Banner::parse(format!("{s}\0").as_bytes());
        assert_eq!(b.system_type, Some(SystemType::Device));
        assert_eq!(b.model.as_deref(), Some("Pixel 7"));
        assert_eq!(b.product.as_deref(), Some("sdk_phone"));
        assert_eq!(b.device.as_deref(), Some("panther"));
        assert!(b.has("shell_v2") && b.has("stat_v2") && !b.has("delayed_ack"));
    }

    proptest::proptest! {
        /// Any payload parses without panicking (the `banner` fuzz target does the same).
        #[test]
        fn any_bytes_parse(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let _ = Banner::parse(&data);
        }

        /// Fields and features the format can carry come back as they went in.
        #[test]
        fn device_banner_fields_round_trip(
            product in "[^;:\\x00]{0,20}",
            model in "[^;\\x00]{0,20}",
            device in "[^;\\x00]{0,20}",
            features in proptest::collection::btree_set("[a-z_0-9]{1,12}", 0..6),
        ) {
            let f: Vec<&str> = features.iter().map(String::as_str).collect();
            let b = Banner::parse(Banner::device(&product, &model, &device, &f).as_bytes());
            proptest::prop_assert_eq!(b.system_type, Some(SystemType::Device));
            proptest::prop_assert_eq!(b.product.as_deref(), Some(product.as_str()));
            proptest::prop_assert_eq!(b.model.as_deref(), Some(model.as_str()));
            proptest::prop_assert_eq!(b.device.as_deref(), Some(device.as_str()));
            proptest::prop_assert_eq!(b.features, features);
        }
    }

    #[test]
    fn host_banner_and_junk() {
        let b = Banner::parse(Banner::host(HOST_FEATURES).as_bytes());
        assert_eq!(b.system_type, Some(SystemType::Host));
        assert!(b.has(FEATURE_DELAYED_ACK));
        let j = Banner::parse(&[0xff, 0xfe, b':', b';', b'=']);
        assert!(j.features.is_empty());
        assert_eq!(Banner::parse(b"").system_type, None);
    }
}
