// How a reply's blocks are drawn in a tab: the finished ones from the server's HTML, with a Copy button on each code
// block, and the block being written, as text (or in a code box once it is a fenced code block). Only Markdown's
// look lives here; reply_text.js, the stream itself (offsets, gaps, the reply so far), calls the two exports and
// needs nothing else from this file, so a first reading can stop there.

import DOMPurify from "dompurify";

const FENCE = /^ {0,3}(`{3,}(?=[^`\n]*(\n|$))|~{3,})/; // as chat/blocks.py: the block being written is code

export function formatted(html) {
  // The server's HTML holds only what Markdown makes (nh3 saw to it); DOMPurify is the last guard. It drops
  // `target` unless told, and links must open in a new tab (their rel="noopener noreferrer" comes from the server).
  const blocks = DOMPurify.sanitize(html, { ADD_ATTR: ["target"], RETURN_DOM_FRAGMENT: true });
  for (const pre of blocks.querySelectorAll("pre")) boxOf(pre).appendChild(copyButton(pre));
  return blocks;
}

function boxOf(pre) {
  // The server draws code in a .codehilite box (chat/markdown.py), which holds its Copy button; markdown2's own
  // code (indented code in a quote) comes bare, so it gets one here.
  if (pre.parentElement?.classList.contains("codehilite")) return pre.parentElement;
  const box = document.createElement("div");
  box.className = "codehilite";
  pre.replaceWith(box);
  box.appendChild(pre);
  return box;
}

function copyButton(pre) {
  const button = document.createElement("button");
  button.className = "copy-code";
  button.type = "button";
  button.textContent = "Copy";
  button.addEventListener("click", async () => {
    const code = (pre.querySelector("code") ?? pre).textContent.replace(/\n$/, ""); // no fence, no label
    try {
      await navigator.clipboard.writeText(code); // only on https or localhost
    } catch {
      const scratch = Object.assign(document.createElement("textarea"), { value: code });
      document.body.appendChild(scratch);
      scratch.select();
      document.execCommand("copy");
      scratch.remove();
    }
    button.textContent = "Copied";
    setTimeout(() => (button.textContent = "Copy"), 1500);
  });
  return button;
}

export class BlockBeingWritten {
  // The block after the finished ones, in `element`: its text as it grows, in a code box from a fence's first line.
  constructor(element) {
    this.element = element;
  }

  show(text) {
    this.isCode = FENCE.test(text);
    this.codeStarted = this.isCode && text.includes("\n");
    if (!this.isCode) {
      this.element.textContent = text;
      this.target = this.element;
      return;
    }
    const code = document.createElement("code"); // shown as text: highlighted once its fence closes
    code.textContent = this.codeStarted ? text.slice(text.indexOf("\n") + 1) : "";
    const box = document.createElement("pre");
    box.className = "code-being-written";
    box.appendChild(code);
    this.element.replaceChildren(box);
    this.target = code;
  }

  grow(fresh, text) {
    // Only the new text, in a text node: the rest of the bubble is left alone.
    const nowCode = FENCE.test(text);
    if (nowCode !== this.isCode || (nowCode && !this.codeStarted)) return this.show(text);
    this.target.appendChild(document.createTextNode(fresh));
  }
}
