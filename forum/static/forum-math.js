// Typeset the forum's math with KaTeX (forum/static/katex). The Markdown renderer keeps each
// formula's TeX as text in span.math.inline and div.math.block; KaTeX replaces it with HTML and
// MathML (the TeX stays in the MathML annotation). trust:false keeps \href, \url and friends off.
(function () {
  "use strict";
  function typeset(root) {
    if (!window.katex) {
      return;
    }
    var nodes = root.querySelectorAll(".post-body .math");
    for (var i = 0; i < nodes.length; i++) {
      var el = nodes[i];
      if (el.getAttribute("data-typeset")) {
        continue;
      }
      try {
        window.katex.render(el.textContent.trim(), el, {
          displayMode: el.classList.contains("block"),
          throwOnError: false,
          trust: false,
          strict: "ignore",
          maxSize: 50,
          maxExpand: 1000,
        });
        el.setAttribute("data-typeset", "1");
      } catch (e) {
        // Leave the TeX as text.
      }
    }
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", function () {
      typeset(document);
    });
  } else {
    typeset(document);
  }
})();
