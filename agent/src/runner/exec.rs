//! One capability on one phone, the same way for a work order and for `phonefarm-agent run`:
//! the inputs checked, the phone's health checked (a phone below the battery or above the
//! temperature threshold is refused with `device_error` before anything is done on it), the
//! flow pack chosen by the installed app version, then the flow.

use phonefarm_flows::flows::{
    self, FlowCtx, FlowError, FlowOptions, MilestoneSink, OverlapJudge, PostVideoInputs,
};
use phonefarm_flows::{PackSet, Ui};
use tokio_util::sync::CancellationToken;

use super::device::PhoneDevice;

/// What to run.
pub struct FlowRequest<'a> {
    pub capability: &'a str,
    /// The work order's inputs (for `post_video`, the fetched video is in `video`).
    pub inputs: serde_json::Value,
    pub video: Option<PostVideoInputs>,
    /// The flow pack the order asks for, if it pins one (a mismatch is logged).
    pub pinned_pack: Option<&'a str>,
}

/// Runs `request` on the phone behind `ui`.
pub async fn run_flow<S: MilestoneSink + ?Sized>(
    ui: &Ui<PhoneDevice>,
    packs: &PackSet,
    app: &str,
    request: FlowRequest<'_>,
    options: FlowOptions,
    sink: &S,
    cancel: &CancellationToken,
) -> Result<serde_json::Value, FlowError> {
    flows::check_inputs(request.capability, &request.inputs)?;
    if let Some(video) = &request.video {
        video.validate()?;
    }
    flows::preflight(ui, &options).await?;
    let pack = flows::select_pack(ui, packs, app).await?;
    if let Some(want) = request.pinned_pack
        && want != pack.name()
        && want != format!("{}@{}", pack.name(), pack.revision())
    {
        tracing::warn!(wanted = %want, chosen = %pack.name(), revision = pack.revision(), "order pins another flow pack; running the one for the installed app");
    }
    tracing::info!(pack = %pack.name(), revision = pack.revision(), "flow pack chosen");
    sink.pack_chosen(pack.name(), pack.revision());
    let ctx = FlowCtx {
        ui,
        pack: &pack,
        sink,
        cancel,
        options,
    };
    match &request.video {
        Some(video) => flows::post_video(&ctx, video).await,
        None => {
            flows::run_capability(&ctx, request.capability, request.inputs, &OverlapJudge).await
        }
    }
}
