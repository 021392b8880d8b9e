//! The executors meet an off screen and a screen no pack knows, in process (the phone model
//! as the device; the faults over ADB are in the agent's tests).

use phonefarm_flows::flows::{FlowFailure, keyword_warmup};
use phonefarm_phonemodel::{Action, UiVariant};

use crate::flows::{Harness, warmup_inputs, with_ctx};

#[tokio::test(start_paused = true)]
async fn a_screen_that_is_off_is_woken_first() {
    let h = Harness::variant(UiVariant::A);
    h.device.phone().set_screen_on(false);
    let result = with_ctx(&h, async |ctx| keyword_warmup(ctx, &warmup_inputs()).await)
        .await
        .unwrap();
    assert_eq!(result["keywords"]["cooking"]["videos_watched"], 2);
    assert!(h.actions().contains(&Action::Key { code: 224 }), "woken");
}

#[tokio::test(start_paused = true)]
async fn a_placeholder_screen_is_a_flow_error_with_evidence() {
    let h = Harness::variant(UiVariant::A);
    h.device.phone().inject_fault(
        phonefarm_phonemodel::Fault::StrangeScreen,
        phonefarm_phonemodel::FaultTrigger::AfterInputs(1),
    );
    let err = with_ctx(&h, async |ctx| keyword_warmup(ctx, &warmup_inputs()).await)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "flow_error:unknown", "{err}");
    assert!(matches!(err.failure, FlowFailure::Flow { .. }));
    let evidence = err.evidence.expect("evidence");
    assert_eq!(evidence.screen, "unknown");
    assert_eq!(
        (evidence.pack.as_str(), evidence.pack_revision),
        ("tiktok-32", 1)
    );
}
