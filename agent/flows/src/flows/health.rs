//! Whether a phone is fit for a run: battery and temperature, read with `dumpsys battery`
//! before the flow touches the UI. A phone below the battery threshold or above the temperature
//! one is not given the run (`device_error`, [`FlowFailure::Health`]): the agent flags it as
//! needing attention until it recovers.

use super::{FlowError, FlowFailure, FlowOptions};
use crate::device::Device;
use crate::ui::{Ui, UiError};

/// What makes a phone unfit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthProblem {
    BatteryLow,
    TooHot,
    /// A push failed for lack of space.
    StorageFull,
}

impl HealthProblem {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BatteryLow => "battery_low",
            Self::TooHot => "too_hot",
            Self::StorageFull => "storage_full",
        }
    }
}

fn field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines().find_map(|l| {
        l.trim()
            .strip_prefix(key)
            .and_then(|rest| rest.strip_prefix(':'))
            .map(str::trim)
    })
}

/// `dumpsys battery`: (`level` scaled by `scale` to a percentage, `temperature` in tenths of a
/// degree). Output it does not understand yields `None`, never an error.
pub fn parse_battery(text: &str) -> (Option<u8>, Option<i16>) {
    let level = field(text, "level").and_then(|v| v.parse::<u32>().ok());
    let scale = field(text, "scale")
        .and_then(|v| v.parse::<u32>().ok())
        .filter(|s| *s > 0)
        .unwrap_or(100);
    let pct = level.map(|l| u8::try_from((l * 100 / scale).min(100)).unwrap_or(100));
    let temp = field(text, "temperature").and_then(|v| v.parse::<i16>().ok());
    (pct, temp)
}

/// Refuses a run on a phone below `options.min_battery` or above `options.max_temperature`.
/// A battery the phone does not report is not held against it.
pub async fn preflight<D: Device>(ui: &Ui<D>, options: &FlowOptions) -> Result<(), FlowError> {
    let out = ui.run("dumpsys battery").await.map_err(|e| match e {
        UiError::Device(d) => FlowError::new(FlowFailure::Device(d.to_string()), d.to_string()),
        other => FlowError::new(FlowFailure::Device(other.to_string()), other.to_string()),
    })?;
    let (level, temperature) = parse_battery(&out.stdout_lossy());
    let unfit = |problem, detail: String| {
        Err(FlowError::new(
            FlowFailure::Health {
                problem,
                detail: detail.clone(),
            },
            detail,
        ))
    };
    if let Some(level) = level
        && level < options.min_battery
    {
        return unfit(
            HealthProblem::BatteryLow,
            format!(
                "battery at {level}%, below the {}% a run needs",
                options.min_battery
            ),
        );
    }
    if let Some(t) = temperature
        && i32::from(t) > options.max_temperature
    {
        return unfit(
            HealthProblem::TooHot,
            format!(
                "battery at {:.1} °C, above the {:.1} °C a run allows",
                f64::from(t) / 10.0,
                f64::from(options.max_temperature) / 10.0
            ),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_real_shaped_output_and_ignores_garbage() {
        let battery = "Current Battery Service state:\n  AC powered: false\n  level: 85\n  scale: 100\n  temperature: 287\n";
        assert_eq!(parse_battery(battery), (Some(85), Some(287)));
        assert_eq!(parse_battery("level: 40\nscale: 200\n"), (Some(20), None));
        assert_eq!(parse_battery("garbage"), (None, None));
    }
}
