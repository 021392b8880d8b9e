// The console's only script of its own: when a live stream says the session ended, go to the
// sign-in page. Everything else is server-rendered HTML swapped in by htmx.
document.addEventListener("htmx:sseBeforeMessage", function (e) {
  if (e.detail && e.detail.type === "signed_out") {
    e.preventDefault();
    window.location.assign("/ui/sign-in");
  }
});

// A page the browser leaves stays in its back/forward cache with its event streams open, and
// HTTP/1.1 allows six connections per host: after a few live pages (the phone page has two
// streams) the next page waited ~45 s for a connection (seen in chromium 156). So the streams
// close when the page is hidden, and a page shown again from that cache reloads, since its
// live parts stopped.
var streams = new Set();
document.addEventListener("htmx:sseOpen", function (e) {
  streams.add(e.detail.source);
});
window.addEventListener("pagehide", function () {
  streams.forEach(function (s) {
    s.close();
  });
  streams.clear();
});
window.addEventListener("pageshow", function (e) {
  if (e.persisted) {
    window.location.reload();
  }
});
