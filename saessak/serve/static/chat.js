// 새싹 web chat: streams replies from /v1/chat/completions (SSE), keeps conversations in this
// browser's localStorage, renders Markdown safely (markdown.js), and never sends a message while
// a Korean IME composition is in progress.
"use strict";

(function () {
  const STORE = "saessak.conversations";
  const CURRENT = "saessak.current";
  const SETTINGS = "saessak.settings";
  const $ = (id) => document.getElementById(id);
  const ui = {
    list: $("conversations"), messages: $("messages"), input: $("input"), send: $("send"), stop: $("stop"),
    status: $("status"), model: $("model-name"), system: $("system-prompt"), temperature: $("temperature"),
    temperatureValue: $("temperature-value"), maxTokens: $("max-tokens"), apiKey: $("api-key"),
    newChat: $("new-chat"), composer: $("composer"),
  };

  let conversations = load(STORE, []);
  let currentId = localStorage.getItem(CURRENT);
  let modelName = null;
  let controller = null; // AbortController of the reply being streamed

  function load(key, fallback) {
    try {
      const v = JSON.parse(localStorage.getItem(key));
      return v === null ? fallback : v;
    } catch (e) {
      return fallback;
    }
  }

  function save() {
    localStorage.setItem(STORE, JSON.stringify(conversations));
    if (currentId) localStorage.setItem(CURRENT, currentId);
    else localStorage.removeItem(CURRENT);
  }

  function saveSettings() {
    localStorage.setItem(SETTINGS, JSON.stringify({
      system: ui.system.value, temperature: ui.temperature.value, maxTokens: ui.maxTokens.value,
      apiKey: ui.apiKey.value,
    }));
  }

  function current() {
    return conversations.find((c) => c.id === currentId) || null;
  }

  function newConversation() {
    const c = { id: "c" + Date.now().toString(36) + Math.random().toString(36).slice(2, 7), title: "새 대화",
                messages: [], updated: Date.now() };
    conversations.unshift(c);
    currentId = c.id;
    save();
    return c;
  }

  function setStatus(text) {
    ui.status.textContent = text || "";
  }

  // -- rendering -------------------------------------------------------------------------------
  function renderList() {
    ui.list.replaceChildren();
    for (const c of conversations) {
      const li = document.createElement("li");
      if (c.id === currentId) li.className = "active";
      const open = document.createElement("button");
      open.type = "button";
      open.className = "open";
      open.textContent = c.title;
      open.addEventListener("click", () => {
        if (controller) return;
        currentId = c.id;
        save();
        renderAll();
      });
      const del = document.createElement("button");
      del.type = "button";
      del.className = "delete";
      del.textContent = "삭제";
      del.setAttribute("aria-label", "대화 삭제: " + c.title);
      del.addEventListener("click", () => {
        if (controller && c.id === currentId) return;
        conversations = conversations.filter((x) => x.id !== c.id);
        if (currentId === c.id) currentId = conversations.length ? conversations[0].id : null;
        save();
        renderAll();
      });
      li.append(open, del);
      ui.list.append(li);
    }
  }

  function messageNode(m) {
    const div = document.createElement("div");
    div.className = "message " + m.role;
    const who = document.createElement("div");
    who.className = "who";
    who.textContent = m.role === "user" ? "나" : "새싹";
    const body = document.createElement("div");
    body.className = "body";
    if (m.role === "assistant") window.saessakRenderMarkdown(m.content, body);
    else body.textContent = m.content; // the user's own text is shown exactly as typed
    div.append(who, body);
    if (m.stopped) {
      const note = document.createElement("div");
      note.className = "note";
      note.textContent = "(답변을 멈췄습니다)";
      div.append(note);
    }
    return div;
  }

  function renderMessages() {
    ui.messages.replaceChildren();
    const c = current();
    if (!c || !c.messages.length) {
      const empty = document.createElement("p");
      empty.className = "empty";
      empty.textContent = "무엇이든 물어보세요. 이 대화는 이 컴퓨터에만 저장됩니다.";
      ui.messages.append(empty);
      return;
    }
    for (const m of c.messages) ui.messages.append(messageNode(m));
    ui.messages.scrollTop = ui.messages.scrollHeight;
  }

  function renderAll() {
    renderList();
    renderMessages();
  }

  function setStreaming(on) {
    ui.send.disabled = on;
    ui.stop.hidden = !on;
  }

  // -- talking to the server ---------------------------------------------------------------------
  function headers() {
    const h = { "Content-Type": "application/json" };
    if (ui.apiKey.value) h["Authorization"] = "Bearer " + ui.apiKey.value;
    return h;
  }

  async function loadModel() {
    try {
      const r = await fetch("/v1/models", { headers: headers() });
      const data = await r.json();
      if (!r.ok) throw new Error((data.error && data.error.message) || r.status);
      modelName = data.data[0].id;
      ui.model.textContent = "모델: " + modelName;
    } catch (e) {
      ui.model.textContent = "모델 정보를 가져오지 못했습니다";
      setTimeout(loadModel, 2000); // the server answers 503 while the model loads
    }
  }

  async function errorMessage(resp) {
    try {
      const data = await resp.json();
      if (data.error && data.error.message) return data.error.message;
    } catch (e) { /* not JSON */ }
    return "HTTP " + resp.status;
  }

  async function sendMessage() {
    const text = ui.input.value;
    if (!text.trim() || controller) return;
    const conv = current() || newConversation();
    if (!conv.messages.length) conv.title = text.trim().slice(0, 30);
    conv.messages.push({ role: "user", content: text });
    const reply = { role: "assistant", content: "" };
    conv.messages.push(reply);
    conv.updated = Date.now();
    ui.input.value = "";
    setStatus("");
    save();
    renderAll();
    const replyBody = ui.messages.lastElementChild.querySelector(".body");

    const messages = [];
    if (ui.system.value.trim()) messages.push({ role: "system", content: ui.system.value });
    for (const m of conv.messages.slice(0, -1)) messages.push({ role: m.role, content: m.content });
    const body = { messages, stream: true, temperature: parseFloat(ui.temperature.value) };
    if (modelName) body.model = modelName;
    const maxTokens = parseInt(ui.maxTokens.value, 10);
    if (maxTokens > 0) body.max_tokens = maxTokens;

    controller = new AbortController();
    setStreaming(true);
    try {
      const resp = await fetch("/v1/chat/completions", {
        method: "POST", headers: headers(), body: JSON.stringify(body), signal: controller.signal,
      });
      if (!resp.ok) throw new Error(await errorMessage(resp));
      const reader = resp.body.getReader();
      const decoder = new TextDecoder("utf-8"); // stream: true keeps split UTF-8 bytes for the next chunk
      let buffer = "";
      let done = false;
      while (!done) {
        const chunk = await reader.read();
        if (chunk.done) break;
        buffer += decoder.decode(chunk.value, { stream: true });
        let cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          const event = buffer.slice(0, cut);
          buffer = buffer.slice(cut + 2);
          for (const line of event.split("\n")) {
            if (!line.startsWith("data: ")) continue;
            const data = line.slice(6);
            if (data === "[DONE]") { done = true; break; }
            const obj = JSON.parse(data);
            if (obj.error) throw new Error(obj.error.message);
            const choice = obj.choices && obj.choices[0];
            if (choice && choice.delta && choice.delta.content) {
              reply.content += choice.delta.content;
              window.saessakRenderMarkdown(reply.content, replyBody);
              ui.messages.scrollTop = ui.messages.scrollHeight;
            }
            if (choice && choice.finish_reason === "length") setStatus("최대 토큰 수에 도달해 답변이 잘렸습니다.");
          }
        }
      }
    } catch (e) {
      if (e.name === "AbortError") {
        reply.stopped = true;
        setStatus("답변을 멈췄습니다.");
      } else {
        setStatus("오류: " + e.message);
        if (!reply.content) conv.messages.pop();
      }
    } finally {
      controller = null;
      setStreaming(false);
      save();
      renderAll();
      ui.input.focus();
    }
  }

  // -- events ----------------------------------------------------------------------------------
  ui.composer.addEventListener("submit", (e) => {
    e.preventDefault();
    sendMessage();
  });
  ui.input.addEventListener("keydown", (e) => {
    if (e.key !== "Enter" || e.shiftKey) return; // Shift+Enter: a new line
    // While a Korean IME composes a syllable, Enter confirms the syllable: it must not send.
    if (e.isComposing || e.keyCode === 229) return;
    e.preventDefault();
    sendMessage();
  });
  ui.stop.addEventListener("click", () => {
    if (controller) controller.abort(); // closing the stream frees the server's slot at once
  });
  ui.newChat.addEventListener("click", () => {
    if (controller) return;
    newConversation();
    renderAll();
    ui.input.focus();
  });
  ui.temperature.addEventListener("input", () => {
    ui.temperatureValue.textContent = ui.temperature.value;
    saveSettings();
  });
  for (const field of [ui.system, ui.maxTokens, ui.apiKey]) field.addEventListener("change", saveSettings);
  ui.apiKey.addEventListener("change", loadModel);

  const settings = load(SETTINGS, {});
  if (settings.system !== undefined) ui.system.value = settings.system;
  if (settings.temperature !== undefined) ui.temperature.value = settings.temperature;
  if (settings.maxTokens !== undefined) ui.maxTokens.value = settings.maxTokens;
  if (settings.apiKey !== undefined) ui.apiKey.value = settings.apiKey;
  ui.temperatureValue.textContent = ui.temperature.value;
  if (!current()) currentId = conversations.length ? conversations[0].id : null;
  renderAll();
  loadModel();
})();
