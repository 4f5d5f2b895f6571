// coopbench: sort any table.sortable by a click on a column header (numbers numerically, else as text;
// a second click reverses). Plain JavaScript, no framework, works from file://.
"use strict";
(function () {
  function key(cell) {
    const text = (cell ? cell.textContent : "").trim();
    const number = parseFloat(text.replace(/,/g, ""));
    return Number.isNaN(number) ? { n: null, t: text.toLowerCase() } : { n: number, t: text };
  }
  function compare(a, b) {
    if (a.n !== null && b.n !== null) return a.n - b.n;
    if (a.n !== null) return -1;
    if (b.n !== null) return 1;
    return a.t < b.t ? -1 : a.t > b.t ? 1 : 0;
  }
  function sortBy(table, column, header) {
    const body = table.tBodies[0];
    if (!body) return;
    const ascending = header.getAttribute("aria-sort") !== "ascending";
    const rows = Array.from(body.rows);
    rows.sort((r, s) => compare(key(r.cells[column]), key(s.cells[column])) * (ascending ? 1 : -1));
    rows.forEach((row) => body.appendChild(row));
    table.querySelectorAll("thead th").forEach((th) => th.removeAttribute("aria-sort"));
    header.setAttribute("aria-sort", ascending ? "ascending" : "descending");
  }
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("table.sortable").forEach(function (table) {
      const head = table.tHead;
      if (!head || !head.rows.length) return;
      Array.from(head.rows[0].cells).forEach(function (th, column) {
        th.classList.add("sort-header");
        th.tabIndex = 0;
        th.title = "Sort by this column";
        th.addEventListener("click", () => sortBy(table, column, th));
        th.addEventListener("keydown", (e) => { if (e.key === "Enter") sortBy(table, column, th); });
      });
    });
  });
})();
