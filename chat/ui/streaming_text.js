// The text of a reply while it is being written, in one tab.
//
// The server does not send this tab an element per new piece of text. Once per beat it broadcasts ONE socket
// message to every tab, `grew`, holding each growing reply's new text and where it starts:
//   {"12": [340, " the next few words"], "15": [80, "..."]}
// This component appends its own part to the page. Offsets count characters (code points, as Python does),
// so a piece that was missed (a dropped connection) is noticed, and the tab asks for the text so far again.

const streams = new Map(); // message id -> the mounted component showing that reply
const early = new Map(); // message id -> pieces that arrived before their component was mounted
let listening = false;

function receive(pieces) {
  for (const [id, piece] of Object.entries(pieces)) {
    const stream = streams.get(id);
    if (stream) {
      stream.add(piece[0], piece[1]);
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

export default {
  template: `<span></span>`,
  props: {
    messageId: Number,
    text: String, // the text so far when this tab's element was made
  },
  mounted() {
    listen();
    this.length = 0;
    this.waiting = false; // asked the server for the text so far; pieces wait in `held` until it comes
    this.held = [];
    this.append(this.text || "");
    const key = String(this.messageId);
    streams.set(key, this);
    for (const [offset, text] of early.get(key) || []) this.add(offset, text);
    early.delete(key);
  },
  unmounted() {
    clearTimeout(this.retry);
    streams.delete(String(this.messageId));
  },
  methods: {
    add(offset, text) {
      if (this.waiting) {
        this.held.push([offset, text]); // the answer may come after newer pieces: keep them for then
        return;
      }
      if (offset > this.length) {
        // Something was missed: ask for the whole text so far rather than show a hole (again, if no answer comes).
        this.waiting = true;
        this.held = [[offset, text]];
        this.$emit("resync");
        this.retry = setTimeout(() => this.waiting && this.$emit("resync"), 3000);
        return;
      }
      const characters = Array.from(text);
      this.append(characters.slice(this.length - offset).join("")); // skip what this tab already shows
    },
    append(text) {
      if (!text) return;
      this.$el.appendChild(document.createTextNode(text)); // only the new text: the rest of the DOM is left alone
      this.length += Array.from(text).length;
    },
    reset(text) {
      // The server's answer to "resync": the whole text so far.
      clearTimeout(this.retry);
      this.$el.textContent = "";
      this.length = 0;
      this.waiting = false;
      this.append(text);
      const held = this.held;
      this.held = [];
      for (const [offset, piece] of held) this.add(offset, piece); // those already in `text` are skipped
    },
  },
};
