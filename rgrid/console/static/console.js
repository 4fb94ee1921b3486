// Keeps the log scrolled to its end while "follow" is ticked.
document.addEventListener("htmx:oobAfterSwap", function (event) {
  var log = document.getElementById("log");
  var follow = document.getElementById("follow");
  if (log && follow && follow.checked && event.detail.target === log) {
    log.scrollTop = log.scrollHeight;
  }
});
