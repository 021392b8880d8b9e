//! Health probes of one phone, as shell commands and parsers of their output. The parsers are
//! pure and total: output they do not understand yields `None`, never an error or a panic.

use tokio::time::Instant;

use crate::phone::PhoneHandle;

/// What one probe pass learned (every field optional: a failed command leaves it unknown).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Health {
    pub serial: Option<String>,
    pub model: Option<String>,
    pub android_version: Option<String>,
    pub battery_level: Option<u8>,
    pub temperature_decicelsius: Option<i16>,
    pub storage_free_bytes: Option<u64>,
    pub screen_on: Option<bool>,
    pub app_version: Option<String>,
}

async fn run(h: &PhoneHandle, cmd: &str, deadline: Instant) -> Option<String> {
    let out = h.shell(cmd, deadline).await.ok()?;
    if out.exit.is_some_and(|e| e != 0) {
        return None;
    }
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn non_empty(s: Option<String>) -> Option<String> {
    s.map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

/// Probes identity and health; `app_package` is the app whose version is reported.
pub async fn probe(h: &PhoneHandle, app_package: &str, deadline: Instant) -> Health {
    let package_cmd = format!("dumpsys package {app_package}");
    let (serial, model, android, battery, df, power, package) = tokio::join!(
        run(h, "getprop ro.serialno", deadline),
        run(h, "getprop ro.product.model", deadline),
        run(h, "getprop ro.build.version.release", deadline),
        run(h, "dumpsys battery", deadline),
        run(h, "df /data", deadline),
        run(h, "dumpsys power", deadline),
        run(h, &package_cmd, deadline),
    );
    let (battery_level, temperature_decicelsius) =
        battery.as_deref().map(parse_battery).unwrap_or_default();
    Health {
        serial: non_empty(serial),
        model: non_empty(model),
        android_version: non_empty(android),
        battery_level,
        temperature_decicelsius,
        storage_free_bytes: df.as_deref().and_then(parse_df_free),
        screen_on: power.as_deref().and_then(parse_screen_on),
        app_version: package.as_deref().and_then(parse_version_name),
    }
}

/// `dumpsys battery`: (`level` scaled by `scale` to a percentage, `temperature`); the flows'
/// parser, which the check before a run uses too.
pub use phonefarm_flows::flows::parse_battery;

/// `df /data` (toybox: `Filesystem 1K-blocks Used Available Use% Mounted on`): the available
/// bytes of the row mounted on `/data`.
pub fn parse_df_free(text: &str) -> Option<u64> {
    text.lines().skip(1).find_map(|l| {
        let cols: Vec<&str> = l.split_whitespace().collect();
        if cols.len() >= 6 && cols[cols.len() - 1] == "/data" {
            cols[3]
                .parse::<u64>()
                .ok()
                .map(|kb| kb.saturating_mul(1024))
        } else {
            None
        }
    })
}

/// `dumpsys power`: `Display Power: state=ON|OFF`, else `mWakefulness=Awake|Asleep|Dozing`.
pub fn parse_screen_on(text: &str) -> Option<bool> {
    for l in text.lines() {
        if let Some(st) = l.trim().strip_prefix("Display Power: state=") {
            return Some(st.trim() == "ON");
        }
    }
    text.lines().find_map(|l| {
        l.trim()
            .strip_prefix("mWakefulness=")
            .map(|w| w.trim() == "Awake")
    })
}

/// `dumpsys package PKG`: the first `versionName=`.
pub fn parse_version_name(text: &str) -> Option<String> {
    text.lines().find_map(|l| {
        l.trim()
            .strip_prefix("versionName=")
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_real_shaped_outputs_and_ignores_garbage() {
        let battery = "Current Battery Service state:\n  AC powered: false\n  level: 85\n  scale: 100\n  temperature: 287\n";
        assert_eq!(parse_battery(battery), (Some(85), Some(287)));
        assert_eq!(parse_battery("level: 40\nscale: 200\n"), (Some(20), None));
        assert_eq!(parse_battery("garbage"), (None, None));
        let df = "Filesystem        1K-blocks       Used  Available Use% Mounted on\n/dev/block/dm-45  67108864   25165824   41943040  38% /data\n";
        assert_eq!(parse_df_free(df), Some(41_943_040 * 1024));
        assert_eq!(parse_df_free("df: /data: No such file"), None);
        assert_eq!(parse_screen_on("Display Power: state=OFF\n"), Some(false));
        assert_eq!(parse_screen_on("  mWakefulness=Awake\n"), Some(true));
        assert_eq!(parse_screen_on(""), None);
        assert_eq!(
            parse_version_name("Packages:\n    versionName=32.5.3\n"),
            Some("32.5.3".into())
        );
        assert_eq!(parse_version_name("Unable to find package: x\n"), None);
    }
}
