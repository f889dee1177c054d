// Runs in the page (Runtime.evaluate), called as (FORMATS)(); returns steel's ScrapeResponse
// without statusCode. Markdown and the readable extract come from the live DOM.
(formats) => {
  const abs = (u) => { try { return new URL(u, document.baseURI).href; } catch { return null; } };
  const meta = (sel) => document.querySelector(sel)?.getAttribute("content") ?? undefined;
  const text = (el) => (el.textContent || "").replace(/\s+/g, " ").trim();

  const cleaned = () => {
    const root = document.documentElement.cloneNode(true);
    root.querySelectorAll("script,style,noscript,iframe,svg,canvas,template,link,meta").forEach((e) => e.remove());
    const keep = new Set(["href", "src", "alt", "title"]);
    root.querySelectorAll("*").forEach((e) => {
      for (const a of [...e.attributes]) if (!keep.has(a.name)) e.removeAttribute(a.name);
    });
    return root.outerHTML;
  };

  const markdown = (root) => {
    const out = [];
    const inline = (node) => {
      let s = "";
      for (const n of node.childNodes) {
        if (n.nodeType === 3) { s += n.textContent.replace(/\s+/g, " "); continue; }
        if (n.nodeType !== 1) continue;
        const t = n.tagName.toLowerCase();
        if (["script", "style", "noscript", "template"].includes(t)) continue;
        if (t === "a" && n.getAttribute("href")) s += `[${inline(n).trim()}](${abs(n.getAttribute("href"))})`;
        else if (t === "img") s += `![${n.getAttribute("alt") || ""}](${abs(n.getAttribute("src") || "")})`;
        else if (t === "strong" || t === "b") s += `**${inline(n).trim()}**`;
        else if (t === "em" || t === "i") s += `*${inline(n).trim()}*`;
        else if (t === "code") s += "`" + n.textContent + "`";
        else if (t === "br") s += "\n";
        else s += inline(n);
      }
      return s;
    };
    const block = (node, depth) => {
      for (const n of node.children) {
        const t = n.tagName.toLowerCase();
        if (["script", "style", "noscript", "template", "head"].includes(t)) continue;
        const h = /^h([1-6])$/.exec(t);
        if (h) out.push("#".repeat(+h[1]) + " " + inline(n).trim());
        else if (t === "p") out.push(inline(n).trim());
        else if (t === "pre") out.push("```\n" + n.textContent.replace(/\n$/, "") + "\n```");
        else if (t === "blockquote") out.push("> " + inline(n).trim());
        else if (t === "hr") out.push("---");
        else if (t === "ul" || t === "ol") {
          let i = 1;
          const items = [...n.children].filter((c) => c.tagName.toLowerCase() === "li");
          out.push(items.map((li) => "  ".repeat(depth) + (t === "ol" ? `${i++}. ` : "- ") + inline(li).trim()).join("\n"));
        } else if (t === "table") {
          const rows = [...n.querySelectorAll("tr")].map((r) => [...r.children].map((c) => inline(c).trim()));
          if (rows.length) {
            out.push(["| " + rows[0].join(" | ") + " |", "|" + rows[0].map(() => " --- |").join(""),
              ...rows.slice(1).map((r) => "| " + r.join(" | ") + " |")].join("\n"));
          }
        } else if (n.children.length === 0) {
          const s = inline(n).trim();
          if (s) out.push(s);
        } else block(n, depth);
      }
    };
    block(root, 0);
    return out.filter((s) => s.length).join("\n\n");
  };

  const readable = () => {
    const candidates = [...document.querySelectorAll("article, main, [role=main], section, div")];
    let best = document.body, score = 0;
    for (const c of candidates) {
      const s = [...c.querySelectorAll("p")].reduce((n, p) => n + text(p).length, 0);
      if (s > score) { best = c; score = s; }
    }
    const content = best ? best.innerHTML : "";
    const textContent = best ? text(best) : "";
    return { title: document.title, content, textContent, length: textContent.length,
             excerpt: meta('meta[name="description"]') ?? textContent.slice(0, 200) };
  };

  const content = {};
  for (const f of formats) {
    if (f === "html") content.html = document.documentElement.outerHTML;
    if (f === "cleaned_html") content.cleaned_html = cleaned();
    if (f === "markdown") content.markdown = markdown(document.body || document.documentElement);
    if (f === "readability") content.readability = readable();
  }
  let jsonLd;
  try {
    jsonLd = [...document.querySelectorAll('script[type="application/ld+json"]')].map((s) => JSON.parse(s.textContent));
  } catch { jsonLd = undefined; }
  const metadata = {
    title: document.title || undefined,
    language: document.documentElement.lang || undefined,
    urlSource: location.href,
    timestamp: new Date().toISOString(),
    description: meta('meta[name="description"]'),
    keywords: meta('meta[name="keywords"]'),
    author: meta('meta[name="author"]'),
    ogTitle: meta('meta[property="og:title"]'),
    ogDescription: meta('meta[property="og:description"]'),
    ogImage: meta('meta[property="og:image"]'),
    ogUrl: meta('meta[property="og:url"]'),
    ogSiteName: meta('meta[property="og:site_name"]'),
    articleAuthor: meta('meta[property="article:author"]'),
    publishedTime: meta('meta[property="article:published_time"]'),
    modifiedTime: meta('meta[property="article:modified_time"]'),
    canonical: document.querySelector('link[rel="canonical"]')?.href,
    favicon: document.querySelector('link[rel~="icon"]')?.href,
    jsonLd: jsonLd && jsonLd.length ? jsonLd : undefined,
    wordCount: text(document.body || document.documentElement).split(" ").filter(Boolean).length,
  };
  const links = [...document.querySelectorAll("a[href]")]
    .map((a) => ({ url: abs(a.getAttribute("href")), text: text(a) }))
    .filter((l) => l.url && !l.url.startsWith("javascript:"));
  return { content, metadata, links };
}
