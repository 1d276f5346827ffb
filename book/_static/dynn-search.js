// Search result snippets come from the page text (Sphinx's Search.htmlToText). The book's pages
// hide their code cells; their source must not become the snippet a reader sees. This drops
// hidden code-cell inputs before Sphinx extracts the text.
document.addEventListener("DOMContentLoaded", () => {
  if (typeof Search === "undefined" || typeof Search.htmlToText !== "function") return;
  const original = Search.htmlToText;
  Search.htmlToText = (htmlString, anchor) => {
    const doc = new DOMParser().parseFromString(htmlString, "text/html");
    doc.querySelectorAll(
      ".tag_hide-input .cell_input, .tag_remove-input .cell_input, .tag_hide-cell, .tag_parameters .cell_input"
    ).forEach((el) => el.remove());
    return original(doc.documentElement.outerHTML, anchor);
  };
});
