// threadloom demo: plain JavaScript, no build step, no libraries.
//
// The live figures arrive over a WebSocket (/live) every half second; the chat is a second
// WebSocket (/chat). Under the `single` model the server serves one connection at a time, so
// an open WebSocket would lock everyone else out, this page's own requests included: there
// the page polls /stats over plain HTTP once a second and turns the chat off, saying why.
// Once figures arrive, <html data-live="connected"> tells people and tests the feed is up.
"use strict";

const root = document.documentElement;
const model = root.dataset.model;
const threads = Number(root.dataset.threads);
const single = model === "single";
const HISTORY = 60; // samples kept per figure: half a minute at two a second
const byId = (id) => document.getElementById(id);

// -- what is running ------------------------------------------------------------------------

const DETAILS = {
  single: "one connection at a time",
  threads: "a thread per connection",
  pool: `${threads} worker threads + 1 I/O thread`,
  asyncio: `one event loop + ${threads} threads for sync code`,
};

function describeModel() {
  byId("model-detail").textContent = DETAILS[model] || "";
  if (!single) byId("busy-note").textContent = "each open WebSocket holds one";
  for (const item of document.querySelectorAll(".model-list li")) {
    item.classList.toggle("current", item.dataset.model === model);
  }
  byId("switch-cmd").textContent = `threadloom --model ${model === "asyncio" ? "threads" : "asyncio"}`;
  const hello = root.dataset.hello;
  if (hello && !hello.startsWith("unix:")) {
    const cut = hello.lastIndexOf(":");
    let host = hello.slice(0, cut).replace(/^\[|\]$/g, "");
    host = { "0.0.0.0": "127.0.0.1", "::": "::1" }[host] || host;
    byId("hello-cmd").textContent = `printf hi | nc ${host} ${hello.slice(cut + 1)}`;
    byId("hello-line").hidden = false;
  }
}

// -- live figures ---------------------------------------------------------------------------

const cards = [...document.querySelectorAll(".figure")].map((card) => ({
  key: card.dataset.key,
  unit: card.dataset.unit || "",
  output: card.querySelector("output"),
  canvas: card.querySelector("canvas"),
  color: getComputedStyle(card).getPropertyValue("--accent").trim() || "#4338ca",
  values: [],
}));

function format(card, value) {
  if (card.unit === "MB") return (value / 1048576).toFixed(1);
  if (card.key === "requests_per_second") return value >= 100 ? value.toFixed(0) : value.toFixed(1);
  return String(value);
}

function showFigures(figures) {
  for (const card of cards) {
    const value = Number(figures[card.key] ?? 0);
    card.values.push(value);
    if (card.values.length > HISTORY) card.values.shift();
    card.output.textContent = format(card, value);
    if (card.unit) {
      const unit = document.createElement("small");
      unit.textContent = card.unit;
      card.output.append(unit);
    }
    drawSparkline(card);
  }
}

function drawSparkline(card) {
  const canvas = card.canvas;
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth;
  const height = canvas.clientHeight;
  if (canvas.width !== Math.round(width * ratio)) {
    canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(height * ratio);
  }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, width, height);
  ctx.fillStyle = "#e4e7f0"; // the baseline, so an empty history still reads as a chart
  ctx.fillRect(0, height - 1, width, 1);
  const values = card.values;
  if (values.length < 2) return;
  const low = card.unit === "MB" ? Math.min(...values) * 0.98 : 0;
  const high = Math.max(low + 1, ...values);
  const step = width / (HISTORY - 1);
  const x0 = width - (values.length - 1) * step;
  const y = (v) => height - 2 - ((v - low) / (high - low)) * (height - 6);
  ctx.beginPath();
  values.forEach((v, i) => (i ? ctx.lineTo(x0 + i * step, y(v)) : ctx.moveTo(x0, y(v))));
  ctx.strokeStyle = card.color;
  ctx.lineWidth = 2;
  ctx.lineJoin = "round";
  ctx.stroke();
  ctx.lineTo(width, height);
  ctx.lineTo(x0, height);
  ctx.closePath();
  const fill = ctx.createLinearGradient(0, 0, 0, height);
  fill.addColorStop(0, card.color + "40");
  fill.addColorStop(1, card.color + "05");
  ctx.fillStyle = fill;
  ctx.fill();
}

function setLive(state, text) {
  root.dataset.live = state;
  byId("feed-text").textContent = text;
}

function socketUrl(path) {
  return `${location.protocol === "https:" ? "wss:" : "ws:"}//${location.host}${path}`;
}

function connectLive(delay = 1000) {
  const ws = new WebSocket(socketUrl("/live"));
  ws.onmessage = (event) => {
    setLive("connected", "live");
    showFigures(JSON.parse(event.data));
  };
  ws.onclose = () => {
    setLive("reconnecting", "reconnecting…");
    setTimeout(() => connectLive(Math.min(delay * 2, 8000)), delay);
  };
}

async function pollLive() {
  try {
    const response = await fetch("/stats", { cache: "no-store" });
    showFigures(await response.json());
    setLive("connected", "live (polling)");
  } catch {
    setLive("reconnecting", "reconnecting…");
  }
  setTimeout(pollLive, 1000);
}

// -- bursts ---------------------------------------------------------------------------------

async function burst(button) {
  const path = button.dataset.path;
  const count = Number(button.dataset.count);
  const bar = button.querySelector(".bar");
  let done = 0;
  let failed = 0;
  button.disabled = true;
  const started = performance.now();
  const one = () =>
    fetch(path, { cache: "no-store" })
      .then((response) => {
        if (!response.ok) failed += 1;
        return response.arrayBuffer();
      })
      .catch(() => {
        failed += 1;
      })
      .finally(() => {
        done += 1;
        bar.style.width = `${(100 * done) / count}%`;
      });
  await Promise.all(Array.from({ length: count }, one));
  const seconds = (performance.now() - started) / 1000;
  addResult(`${count} × ${path}`, seconds, count / seconds, failed);
  button.disabled = false;
  setTimeout(() => (bar.style.width = "0"), 400);
}

function addResult(what, seconds, rate, failed) {
  const list = byId("results");
  list.querySelector(".empty")?.remove();
  const item = document.createElement("li");
  const name = document.createElement("span");
  name.className = "what";
  name.textContent = what;
  const how = document.createElement("span");
  how.className = "how";
  how.textContent = `${seconds.toFixed(2)} s · ${rate.toFixed(0)} req/s`;
  if (failed) {
    const bad = document.createElement("span");
    bad.className = "failed";
    bad.textContent = ` · ${failed} failed`;
    how.append(bad);
  }
  item.append(name, how);
  list.prepend(item);
  while (list.children.length > 4) list.lastElementChild.remove();
}

// -- chat -----------------------------------------------------------------------------------

const chat = { ws: null, greeted: false };

function chatName() {
  const input = byId("chat-name");
  const saved = localStorage.getItem("threadloom-name");
  input.value = saved || `guest-${Math.floor(100 + Math.random() * 900)}`;
  input.addEventListener("change", () => localStorage.setItem("threadloom-name", input.value.trim()));
}

function enableChat(on) {
  for (const id of ["chat-name", "chat-text", "chat-send"]) byId(id).disabled = !on;
}

function addMessage(message) {
  const box = byId("messages");
  const item = document.createElement("div");
  const mine = message.name === byId("chat-name").value.trim();
  item.className = mine ? "msg mine" : "msg";
  const meta = document.createElement("div");
  meta.className = "meta";
  const who = document.createElement("b");
  who.textContent = message.name;
  const when = new Date(message.at * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  meta.append(who, when);
  const bubble = document.createElement("div");
  bubble.className = "bubble";
  bubble.textContent = message.text;
  item.append(meta, bubble);
  box.append(item);
  box.scrollTop = box.scrollHeight;
}

function addSystemLine(text) {
  const line = document.createElement("div");
  line.className = "msg system";
  line.textContent = text;
  byId("messages").append(line);
}

function connectChat(delay = 1000) {
  const ws = new WebSocket(socketUrl("/chat"));
  chat.ws = ws;
  ws.onopen = () => {
    enableChat(true);
    delay = 1000;
    if (!chat.greeted) {
      chat.greeted = true;
      addSystemLine(`You are ${byId("chat-name").value.trim()}: what you send reaches every open tab.`);
    }
  };
  ws.onmessage = (event) => {
    const data = JSON.parse(event.data);
    if (data.type === "message") addMessage(data);
    else if (data.type === "presence")
      byId("presence").textContent = data.count === 1 ? "just you here: open another tab" : `${data.count} people here`;
  };
  ws.onclose = () => {
    enableChat(false);
    setTimeout(() => connectChat(Math.min(delay * 2, 8000)), delay);
  };
}

function sendChat(event) {
  event.preventDefault();
  const input = byId("chat-text");
  const text = input.value.trim();
  if (!text || !chat.ws || chat.ws.readyState !== WebSocket.OPEN) return;
  chat.ws.send(JSON.stringify({ name: byId("chat-name").value.trim(), text }));
  input.value = "";
}

function chatOff() {
  enableChat(false);
  const note = byId("chat-note");
  const flag = (text) => Object.assign(document.createElement("code"), { textContent: text });
  note.append(
    "The chat needs a WebSocket that stays open. Under single the server serves one connection " +
      "at a time, so an open socket would lock everyone else out, this page included. Restart " +
      "with ",
    flag("--model threads"), ", ", flag("pool"), " or ", flag("asyncio"), " to chat.",
  );
  note.hidden = false;
  byId("messages").hidden = true;
  byId("presence").textContent = "off under single";
}

// -- start ----------------------------------------------------------------------------------

describeModel();
chatName();
for (const button of document.querySelectorAll(".bursts button")) {
  button.addEventListener("click", () => burst(button));
}
byId("chat-form").addEventListener("submit", sendChat);
if (single) {
  byId("feed-hint").textContent = "polled over HTTP every second: single serves one connection at a time";
  chatOff();
  pollLive();
} else {
  enableChat(false);
  connectLive();
  connectChat();
}
