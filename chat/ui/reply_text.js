// A reply's text as it streams into one tab: the core of the stream in the browser. Once per beat ONE socket
// message, `grew`, holds each growing reply's new text and the blocks it finished, rendered once by the server:
//   {"12": [340, " the next words"], "15": [80, "...\n\n", 61, 84, "<p>...</p>"]}
// ([offset, new text] or [offset, new text, blocks from, blocks to, their HTML]). Each piece lands where its offset
// says (offsets count code points, as Python does), a gap (a dropped connection) is noticed and the reply so far
// asked for, and pieces that came before their bubble wait for it. How blocks look is reply_blocks.js's part.

import { BlockBeingWritten, formatted } from "reply_blocks"; // chat/ui/reply_blocks.js, by its import-map name

const streams = new Map(); // message id -> the mounted component showing that reply while it streams
// message id -> pieces that came before their component was mounted: the text goes straight to the socket, while
// the page adds a new bubble through its pacing (chat/performance/pacing.py), up to a beat later.
const early = new Map();
let listening = false;

function receive(pieces) {
  for (const [id, piece] of Object.entries(pieces)) {
    const stream = streams.get(id);
    if (stream) {
      stream.add(piece);
    } else {
      if (!early.has(id)) early.set(id, []);
      early.get(id).push(piece);
      if (early.size > 50) early.delete(early.keys().next().value); // replies this tab will never show
    }
  }
}

function listen() {
  if (listening || !window.socket) return;
  window.socket.on("grew", receive);
  listening = true;
}
listen(); // this module is first imported once the page's socket exists: start listening before any reply mounts

const length = (text) => Array.from(text).length;
const after = (text, count) => Array.from(text).slice(count).join("");

export default {
  template: `<div><div ref="blocks"></div><div ref="tail" class="reply-tail"></div></div>`,
  props: {
    messageId: Number,
    html: String, // the finished blocks when this tab's element was made
    done: Number, // where they end in the text
    tail: String, // the text after them: the block being written
    live: Boolean, // still streaming: listen for its pieces
  },
  mounted() {
    this.waiting = false; // asked the server for the reply so far; pieces wait in `held` until it comes
    this.held = [];
    this.writingView = new BlockBeingWritten(this.$refs.tail);
    // show() sets what this tab has of the reply: `blocksEnd`, `writing` (the text after them) and `length`
    this.show({ html: this.html, done: this.done, tail: this.tail });
    const key = String(this.messageId);
    if (!this.live) {
      early.delete(key); // it ended before it mounted: its early pieces are in `html` already
      return;
    }
    listen();
    streams.set(key, this);
    for (const piece of early.get(key) || []) this.add(piece);
    early.delete(key);
  },
  unmounted() {
    clearTimeout(this.retry);
    streams.delete(String(this.messageId));
  },
  methods: {
    add(piece) {
      if (this.waiting) {
        this.held.push(piece); // the answer may come after newer pieces: keep them for then
        return;
      }
      const [offset, text, from, to, html] = piece;
      const finishes = to !== undefined && to > this.blocksEnd;
      if (offset > this.length || (finishes && from !== this.blocksEnd)) return this.resync(piece); // something missed
      const fresh = after(text, this.length - offset); // skip what this tab already shows
      this.writing += fresh;
      this.length += length(fresh);
      if (finishes) {
        this.$refs.blocks.appendChild(formatted(html));
        this.writing = after(this.writing, to - this.blocksEnd);
        this.blocksEnd = to;
        this.writingView.show(this.writing);
      } else if (fresh) {
        this.writingView.grow(fresh, this.writing);
      }
    },
    resync(piece) {
      // Ask for the whole reply so far rather than show a hole; again, ever more slowly, until the answer comes
      // (the server answers a few a minute per tab, and the connection may be down).
      this.waiting = true;
      this.held = piece ? [piece] : [];
      this.askAgain(3000);
      this.$emit("resync");
    },
    askAgain(delay) {
      clearTimeout(this.retry);
      this.retry = setTimeout(() => {
        if (!this.waiting) return;
        this.$emit("resync");
        this.askAgain(Math.min(2 * delay, 30000));
      }, delay);
    },
    reset(state) {
      // The server's answer to "resync": the reply so far.
      clearTimeout(this.retry);
      this.waiting = false;
      this.show(state);
      const held = this.held;
      this.held = [];
      for (const piece of held) this.add(piece); // those already in the answer are skipped
    },
    finish(total) {
      // The reply ended with `total` characters, all in finished blocks: a tab that has less asks for them.
      streams.delete(String(this.messageId));
      if (!this.waiting && this.blocksEnd !== total) this.resync(null);
    },
    show({ html, done, tail }) {
      this.$refs.blocks.replaceChildren(formatted(html || ""));
      this.blocksEnd = done || 0;
      this.writing = tail || ""; // the block being written
      this.length = this.blocksEnd + length(this.writing);
      this.writingView.show(this.writing);
    },
  },
};
