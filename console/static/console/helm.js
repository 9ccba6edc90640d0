// The Helm values page: copies the YAML. A file, not inline: the CSP allows this site's scripts only.
(function () {
  const button = document.getElementById("helm-copy");
  const status = document.getElementById("helm-copied");
  button.addEventListener("click", () => {
    const text = document.getElementById(button.dataset.target).textContent;
    // The clipboard API needs a secure context (HTTPS or localhost); otherwise select the text.
    const copied = navigator.clipboard ? navigator.clipboard.writeText(text) : Promise.reject(new Error("no clipboard"));
    copied.then(() => { status.textContent = "Copied."; }).catch(() => {
      const range = document.createRange();
      range.selectNodeContents(document.getElementById(button.dataset.target));
      window.getSelection().removeAllRanges();
      window.getSelection().addRange(range);
      status.textContent = "Selected: press Ctrl+C.";
    });
  });
})();
