// The console's only script of its own: when a live stream says the session ended, go to the
// sign-in page. Everything else is server-rendered HTML swapped in by htmx.
document.addEventListener("htmx:sseBeforeMessage", function (e) {
  if (e.detail && e.detail.type === "signed_out") {
    e.preventDefault();
    window.location.assign("/ui/sign-in");
  }
});
