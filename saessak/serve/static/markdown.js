// A small Markdown renderer that builds DOM nodes and never parses text as HTML:
// every piece of user or model text reaches the page through textContent, so "<script>" or
// "<img onerror=...>" in a message is shown as text. Supports fenced code blocks, inline code,
// headings, bullet and numbered lists, **bold**, *italic* and paragraphs with line breaks.
"use strict";

(function () {
  function el(tag, text) {
    const node = document.createElement(tag);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  const INLINE = /(`[^`\n]+`|\*\*[^*\n]+\*\*|\*[^*\s\n][^*\n]*\*)/g;

  function appendInline(parent, text) {
    let last = 0;
    for (const m of text.matchAll(INLINE)) {
      if (m.index > last) parent.append(document.createTextNode(text.slice(last, m.index)));
      const tok = m[0];
      if (tok.startsWith("`")) parent.append(el("code", tok.slice(1, -1)));
      else if (tok.startsWith("**")) parent.append(el("strong", tok.slice(2, -2)));
      else parent.append(el("em", tok.slice(1, -1)));
      last = m.index + tok.length;
    }
    if (last < text.length) parent.append(document.createTextNode(text.slice(last)));
  }

  const FENCE = /^\s*```\s*([\w+#.-]*)\s*$/;
  const HEADING = /^(#{1,6})\s+(.*)$/;
  const BULLET = /^\s*[-*+]\s+(.*)$/;
  const NUMBERED = /^\s*\d+[.)]\s+(.*)$/;

  function renderMarkdown(src, container) {
    container.replaceChildren();
    const lines = String(src).split("\n");
    let i = 0;
    while (i < lines.length) {
      const line = lines[i];
      const fence = line.match(FENCE);
      if (fence) {
        const code = [];
        i++;
        while (i < lines.length && !/^\s*```\s*$/.test(lines[i])) code.push(lines[i++]);
        i++; // the closing fence (absent while a reply is still streaming)
        const pre = el("pre");
        const c = el("code", code.join("\n"));
        if (fence[1]) c.dataset.lang = fence[1];
        pre.append(c);
        container.append(pre);
        continue;
      }
      const heading = line.match(HEADING);
      if (heading) {
        const h = el("h" + Math.min(6, heading[1].length + 2));
        appendInline(h, heading[2]);
        container.append(h);
        i++;
        continue;
      }
      if (BULLET.test(line) || NUMBERED.test(line)) {
        const re = BULLET.test(line) ? BULLET : NUMBERED;
        const list = el(re === BULLET ? "ul" : "ol");
        while (i < lines.length && re.test(lines[i])) {
          const li = el("li");
          appendInline(li, lines[i].match(re)[1]);
          list.append(li);
          i++;
        }
        container.append(list);
        continue;
      }
      if (!line.trim()) {
        i++;
        continue;
      }
      const p = el("p");
      let first = true;
      while (i < lines.length && lines[i].trim() && !FENCE.test(lines[i]) && !HEADING.test(lines[i]) &&
             !BULLET.test(lines[i]) && !NUMBERED.test(lines[i])) {
        if (!first) p.append(el("br"));
        appendInline(p, lines[i]);
        first = false;
        i++;
      }
      container.append(p);
    }
  }

  window.saessakRenderMarkdown = renderMarkdown;
})();
