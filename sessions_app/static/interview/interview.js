"use strict";
// The interview screen. Each answer is recorded in the browser and uploaded in the background
// as soon as the candidate presses Next, so the next question shows at once. A chip per
// question shows where its answer is; Finish waits for the transcripts and shows the scores.
// The chips and the results arrive over the session's event stream (EventSource); where the
// stream cannot be opened, the page polls the status and analyze endpoints instead.

(() => {
  const page = JSON.parse(document.getElementById("interview-page").textContent);
  const $ = (id) => document.getElementById(id);
  const ui = {
    chips: $("chips"),
    questionPanel: $("question-panel"),
    progress: $("question-progress"),
    questionText: $("question-text"),
    questionTopic: $("question-topic"),
    record: $("record"),
    stop: $("stop"),
    timer: $("timer"),
    level: $("level"),
    recorderError: $("recorder-error"),
    next: $("next"),
    donePanel: $("done-panel"),
    doneHeading: $("done-heading"),
    finishBar: $("finish-bar"),
    finish: $("finish"),
    status: $("status"),
    finishError: $("finish-error"),
    results: $("results"),
    resultsHeading: $("results-heading"),
    finalScore: $("final-score"),
    resultsSummary: $("results-summary"),
    resultList: $("result-list"),
  };

  const PREFERRED_AUDIO_TYPE = "audio/webm;codecs=opus";
  const STATUS_POLL_MS = 2000;
  const FIRST_RETRY_MS = 1000;
  const MAX_RETRY_MS = 30000;
  const ANALYSIS_WAIT_MS = 30000; // with the stream open, analyze again after this at most
  const CHIP_LABELS = {
    not_recorded: "not recorded",
    recording: "recording",
    recorded: "recorded",
    uploading: "uploading",
    queued: "queued",
    processing: "processing",
    completed: "completed",
    failed: "failed",
  };

  // One entry per question. `state` is what the browser knows: not_recorded, recording,
  // recorded, uploading, rejected (a 4xx) or sent; once sent, `server` holds the API's view.
  const answers = page.questions.map((question, index) => ({
    question,
    index,
    state: "not_recorded",
    blob: null,
    message: "",
    upload: null,
    server: null,
  }));
  const answersById = new Map(answers.map((answer) => [answer.question.id, answer]));
  let current = 0;
  let recording = null;
  let polling = false;
  let stream = null; // the EventSource, while it is open or reconnecting
  let streamOpened = false;
  let latestAnalysis = null;
  let analysisWaiter = null;
  let finishing = false;
  let finished = false;

  // --- Chips ----------------------------------------------------------------

  const chipElements = answers.map((answer) => {
    const chip = document.createElement("li");
    chip.className = "chip";
    const number = document.createElement("span");
    number.className = "chip-number";
    number.textContent = `Q${answer.index + 1}`;
    const state = document.createElement("span");
    state.className = "chip-state";
    const message = document.createElement("span");
    message.className = "chip-message";
    chip.append(number, " ", state, " ", message);
    ui.chips.append(chip);
    return chip;
  });

  function shownState(answer) {
    if (answer.state === "rejected") return { state: "failed", message: answer.message };
    if (answer.state !== "sent" && answer.state !== "not_recorded") {
      return { state: answer.state, message: answer.message };
    }
    if (answer.server && answer.server.status !== "not_uploaded") {
      return { state: answer.server.status, message: answer.server.error || "" };
    }
    return { state: "not_recorded", message: "" };
  }

  function renderChips() {
    answers.forEach((answer, index) => {
      const chip = chipElements[index];
      const { state, message } = shownState(answer);
      chip.dataset.state = state;
      chip.querySelector(".chip-state").textContent = CHIP_LABELS[state] || state;
      chip.querySelector(".chip-message").textContent = message;
      if (index === current && !finished) chip.setAttribute("aria-current", "step");
      else chip.removeAttribute("aria-current");
    });
    const anything = answers.some((answer) => shownState(answer).state !== "not_recorded");
    ui.finish.disabled = finishing || finished || recording !== null || !anything;
  }

  function say(text) {
    ui.status.textContent = text;
  }

  // --- Status polling -------------------------------------------------------

  const isBusy = (answer) =>
    answer.state === "uploading" ||
    (answer.state === "sent" && ["queued", "processing"].includes(answer.server?.status));

  async function refreshStatus() {
    const { data } = await api.request(page.status_url);
    for (const entry of data.questions) {
      const answer = answersById.get(entry.question_id);
      // A reply to a request sent before the upload landed says nothing about it.
      if (!answer || (entry.status === "not_uploaded" && answer.state === "sent")) continue;
      answer.server = { status: entry.status, error: entry.error || "" };
      if (entry.status !== "not_uploaded" && answer.state === "not_recorded") answer.state = "sent";
    }
    renderChips();
  }

  function keepPolling() {
    if (polling || stream) return; // the stream brings every change
    polling = true;
    (async () => {
      while (!finished && !stream && answers.some(isBusy)) {
        await api.sleep(STATUS_POLL_MS);
        try {
          await refreshStatus();
        } catch (failure) {
          if (!failure.retryable) break;
        }
      }
      polling = false;
    })();
  }

  // --- Live events ----------------------------------------------------------

  function applyStatus(entry) {
    const answer = answersById.get(entry.question_id);
    if (!answer) return;
    answer.server = { status: entry.status, error: entry.error || "" };
    if (answer.state === "not_recorded") answer.state = "sent";
    renderChips();
  }

  // An analysis counts once it covers every answer this page has sent, all transcribed:
  // one computed before the last upload landed says nothing about it.
  function covers(result) {
    const done = new Map(result.answers.map((entry) => [entry.question_id, entry.status]));
    return answers.every(
      (answer) =>
        !["sent", "uploading", "recorded"].includes(answer.state) ||
        ["completed", "failed"].includes(done.get(answer.question.id)),
    );
  }

  function onAnalysis(result) {
    latestAnalysis = result;
    if (analysisWaiter && covers(result)) analysisWaiter(result);
  }

  // Resolves with the analysis once it arrives, or null when the stream is gone or the wait
  // is over (the caller then asks analyze again).
  function nextAnalysis(timeoutMs) {
    if (latestAnalysis && covers(latestAnalysis)) return Promise.resolve(latestAnalysis);
    if (!stream) return Promise.resolve(null);
    return new Promise((resolve) => {
      const timer = setTimeout(() => settle(null), timeoutMs);
      function settle(result) {
        clearTimeout(timer);
        analysisWaiter = null;
        resolve(result);
      }
      analysisWaiter = settle;
    });
  }

  function stopStream() {
    if (!stream) return;
    stream.close();
    stream = null;
    if (analysisWaiter) analysisWaiter(null);
  }

  function openStream() {
    if (!page.events_url || typeof EventSource === "undefined") return;
    stream = new EventSource(page.events_url);
    stream.addEventListener("open", () => {
      streamOpened = true;
    });
    stream.addEventListener("error", () => {
      // EventSource reconnects by itself (sending Last-Event-ID) unless it gave up: then, or
      // when it never opened, the page quietly falls back to polling.
      if (stream && (stream.readyState === EventSource.CLOSED || !streamOpened)) {
        stopStream();
        if (!finished) keepPolling();
      }
    });
    for (const name of ["queued", "processing", "completed", "failed"]) {
      stream.addEventListener(name, (message) => applyStatus(JSON.parse(message.data)));
    }
    stream.addEventListener("analysis", (message) => onAnalysis(JSON.parse(message.data)));
  }

  // --- Recording ------------------------------------------------------------

  function microphoneErrorText(error) {
    switch (error.name) {
      case "NotAllowedError":
      case "SecurityError":
        return (
          "Microphone access was refused, so your answer cannot be recorded. Allow this site " +
          "to use the microphone (the icon in the address bar), then press Record again."
        );
      case "NotFoundError":
      case "OverconstrainedError":
        return "No microphone was found. Connect one, then press Record again.";
      case "NotReadableError":
        return "The microphone could not be started; another program may be using it.";
      default:
        return `The microphone could not be started: ${error.message || error.name}`;
    }
  }

  function showRecorderError(text) {
    ui.recorderError.textContent = text;
    ui.recorderError.hidden = !text;
  }

  function levelMeter(stream) {
    const AudioContextClass = window.AudioContext || window.webkitAudioContext;
    if (!AudioContextClass) return { level: () => 0, close() {} };
    const context = new AudioContextClass();
    const analyser = context.createAnalyser();
    analyser.fftSize = 1024;
    context.createMediaStreamSource(stream).connect(analyser);
    const samples = new Float32Array(analyser.fftSize);
    return {
      level() {
        analyser.getFloatTimeDomainData(samples);
        let sum = 0;
        for (const sample of samples) sum += sample * sample;
        // Speech has an RMS of about 0.05 to 0.25: scale it so the meter moves visibly.
        return Math.min(1, Math.sqrt(sum / samples.length) * 4);
      },
      close() {
        context.close();
      },
    };
  }

  const formatDuration = (ms) => {
    const seconds = Math.floor(ms / 1000);
    return `${Math.floor(seconds / 60)}:${String(seconds % 60).padStart(2, "0")}`;
  };

  async function startRecording() {
    showRecorderError("");
    if (!navigator.mediaDevices?.getUserMedia || typeof MediaRecorder === "undefined") {
      showRecorderError(
        "This browser cannot record audio on this page. Use a current browser, over HTTPS.",
      );
      return;
    }
    // Until the browser answers, the candidate stays on this question.
    ui.record.disabled = ui.next.disabled = true;
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    } catch (error) {
      ui.record.disabled = ui.next.disabled = false;
      showRecorderError(microphoneErrorText(error));
      say("");
      return;
    }
    const options = MediaRecorder.isTypeSupported(PREFERRED_AUDIO_TYPE)
      ? { mimeType: PREFERRED_AUDIO_TYPE }
      : {};
    const recorder = new MediaRecorder(stream, options);
    const chunks = [];
    recorder.addEventListener("dataavailable", (event) => {
      if (event.data.size) chunks.push(event.data);
    });
    const stopped = new Promise((resolve) => {
      recorder.addEventListener("stop", () =>
        resolve(new Blob(chunks, { type: recorder.mimeType || "audio/webm" })),
      );
    });
    const meter = levelMeter(stream);
    const startedAt = performance.now();
    const tick = setInterval(() => {
      ui.timer.textContent = formatDuration(performance.now() - startedAt);
      ui.level.value = meter.level();
    }, 100);
    recorder.start();
    recording = { recorder, stream, meter, tick, stopped, answer: answers[current] };
    recording.answer.state = "recording";
    ui.timer.textContent = "0:00";
    ui.stop.disabled = ui.next.disabled = false;
    ui.stop.focus();
    say("Recording. Press Stop when you have answered.");
    renderChips();
  }

  async function stopRecording() {
    const active = recording;
    if (!active) return;
    recording = null;
    ui.stop.disabled = true;
    active.recorder.stop();
    const blob = await active.stopped;
    clearInterval(active.tick);
    for (const track of active.stream.getTracks()) track.stop();
    active.meter.close();
    ui.level.value = 0;
    const { answer } = active;
    if (blob.size) {
      answer.blob = blob;
      answer.state = "recorded";
      answer.message = "";
      say(`Answer recorded (${ui.timer.textContent}). Press Next to go on, or Record to try again.`);
    } else {
      answer.state = answer.blob ? "recorded" : "not_recorded";
      showRecorderError("Nothing was recorded. Check the microphone and press Record again.");
    }
    if (answer.index === current) ui.record.disabled = false;
    renderChips();
  }

  // --- Uploading ------------------------------------------------------------

  function fileName(answer) {
    const subtype = answer.blob.type.split(";")[0].split("/")[1] || "webm";
    return `answer-${answer.question.id}.${subtype}`;
  }

  // Send the recording until the server accepts it; it stays in memory until then.
  function upload(answer) {
    answer.state = "uploading";
    answer.message = "";
    renderChips();
    answer.upload = (async () => {
      let delay = FIRST_RETRY_MS;
      for (;;) {
        const form = new FormData();
        form.append("audio", answer.blob, fileName(answer));
        try {
          const { data } = await api.request(answer.question.upload_url, { method: "POST", form });
          answer.blob = null;
          answer.state = "sent";
          answer.message = "";
          answer.server = { status: data.transcription_status, error: "" };
          renderChips();
          keepPolling();
          return;
        } catch (failure) {
          if (!failure.retryable) {
            answer.state = "rejected";
            answer.message = failure.message;
            say(`Your answer to question ${answer.index + 1} was not accepted: ${failure.message}`);
            renderChips();
            return;
          }
          const wait = delay + Math.random() * delay * 0.2;
          answer.message = `${failure.message} Retrying in ${Math.round(wait / 1000)} s.`;
          renderChips();
          await api.sleep(wait);
          delay = Math.min(delay * 2, MAX_RETRY_MS);
        }
      }
    })();
    keepPolling();
  }

  // --- Moving through the questions -----------------------------------------

  function showQuestion(index) {
    current = index;
    showRecorderError("");
    ui.timer.textContent = "0:00";
    if (index >= answers.length) {
      ui.questionPanel.hidden = true;
      ui.donePanel.hidden = false;
      ui.doneHeading.focus();
      say("");
      renderChips();
      return;
    }
    const { question } = answers[index];
    ui.progress.textContent = `Question ${index + 1} of ${answers.length}`;
    ui.questionText.textContent = question.text;
    ui.questionTopic.textContent = `Topic: ${question.category}`;
    ui.record.disabled = false;
    ui.stop.disabled = true;
    ui.next.disabled = false;
    ui.questionPanel.hidden = false;
    ui.donePanel.hidden = true;
    ui.questionText.focus();
    say("");
    renderChips();
  }

  async function next() {
    const answer = answers[current];
    ui.next.disabled = true;
    if (recording) await stopRecording();
    if (answer.state === "recorded") upload(answer);
    showQuestion(current + 1);
  }

  // --- Finishing ------------------------------------------------------------

  async function finish() {
    finishing = true;
    ui.finishError.hidden = true;
    ui.record.disabled = ui.next.disabled = true;
    renderChips();
    const answer = answers[current];
    if (answer?.state === "recorded") upload(answer);

    say("Analyzing... sending your answers.");
    await Promise.all(answers.map((entry) => entry.upload).filter(Boolean));

    let delay = FIRST_RETRY_MS;
    for (;;) {
      let reply;
      try {
        reply = await api.request(page.analyze_url, { method: "POST" });
      } catch (failure) {
        if (failure.retryable) {
          say(`Analyzing... ${failure.message} Trying again shortly.`);
          await api.sleep(delay);
          delay = Math.min(delay * 2, MAX_RETRY_MS);
          continue;
        }
        say("");
        ui.finishError.textContent = failure.message;
        ui.finishError.hidden = false;
        finishing = false;
        if (current < answers.length) ui.record.disabled = ui.next.disabled = false;
        renderChips();
        return;
      }
      if (reply.data.status !== "transcription_pending") {
        showResults(reply.data);
        return;
      }
      const pending = reply.data.pending_count;
      say(`Analyzing... ${pending} ${pending === 1 ? "answer is" : "answers are"} still being transcribed.`);
      if (stream) {
        // The results come as an event the moment the last transcript lands.
        const result = await nextAnalysis(ANALYSIS_WAIT_MS);
        if (result) {
          showResults(result);
          return;
        }
        continue;
      }
      keepPolling();
      await api.sleep(reply.data.retry_after * 1000);
    }
  }

  function element(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  // The transcript, word by word, with the words the recogniser was unsure of marked.
  function transcriptBlock(entry) {
    const block = element("blockquote", "transcript");
    const unsure = new Map(
      (entry.delivery ? entry.delivery.low_confidence_words : []).map((w) => [w.index, w]),
    );
    if (!entry.words || !entry.words.length || !unsure.size) {
      block.textContent = entry.transcript || "(no speech)";
      return block;
    }
    entry.words.forEach((word, index) => {
      if (index) block.append(" ");
      const low = unsure.get(index);
      if (low) {
        const mark = element("mark", "unsure", word.word);
        mark.title = `Heard with ${Math.round(low.probability * 100)}% confidence`;
        block.append(mark);
      } else {
        block.append(word.word);
      }
    });
    return block;
  }

  // How the answer was delivered: reported beside the score, never part of it.
  function deliveryBlock(delivery) {
    const section = element("section", "delivery");
    section.append(element("h4", "", "How you said it (not part of the score)"));
    const facts = element("dl", "delivery-facts");
    const [low, high] = delivery.comfortable_wpm;
    const pace =
      delivery.words_per_minute === null
        ? "too short to tell"
        : `${delivery.words_per_minute} words/min: ${delivery.pace} (aim for ${low}-${high})`;
    const fillers = Object.entries(delivery.fillers.counts)
      .map(([word, count]) => `${word} ×${count}`)
      .join(", ");
    for (const [term, value] of [
      ["Speaking time", `${delivery.speaking_seconds} s`],
      ["Pace", pace],
      ["Pauses over 2 s", String(delivery.long_pauses.length)],
      ["Filler words", fillers || "none heard"],
      ["Unsure words", String(delivery.low_confidence_words.length)],
    ]) {
      facts.append(element("dt", "", term), element("dd", "", value));
    }
    section.append(facts);
    const notes = element("ul", "delivery-notes");
    notes.append(...delivery.notes.map((note) => element("li", "", note)));
    section.append(notes);
    return section;
  }

  function showResults(result) {
    finished = true;
    stopStream();
    finishing = false;
    const results = new Map(result.answers.map((entry) => [entry.question_id, entry]));
    for (const answer of answers) {
      const entry = results.get(answer.question.id);
      if (entry) answer.server = { status: entry.status, error: entry.error };
    }
    renderChips();

    ui.questionPanel.hidden = ui.donePanel.hidden = ui.finishBar.hidden = true;
    ui.finalScore.textContent =
      result.final_score === null ? "none yet" : `${result.final_score} / 100`;
    const unanswered = answers.length - result.answers.length;
    const summary = [`${result.scored_count} of ${answers.length} answers scored`];
    if (result.unscored_count) summary.push(`${result.unscored_count} could not be scored`);
    if (result.failed_count) summary.push(`${result.failed_count} could not be transcribed`);
    if (unanswered) summary.push(`${unanswered} not answered`);
    ui.resultsSummary.textContent = `${summary.join(", ")}.`;

    ui.resultList.replaceChildren(
      ...answers.map((answer) => {
        const entry = results.get(answer.question.id);
        const item = element("li", "result");
        item.append(element("h3", "", `${answer.index + 1}. ${answer.question.text}`));
        if (!entry) {
          item.append(element("p", "muted", "Not answered."));
          return item;
        }
        if (entry.status === "failed") {
          item.append(element("p", "error", `The transcription failed: ${entry.error}`));
          return item;
        }
        const score = entry.score === null ? "not scored" : `${entry.score} / 100`;
        item.append(element("p", "score", `Score: ${score}`));
        if (entry.score === null && entry.score_error) {
          item.append(element("p", "muted score-error", entry.score_error));
        }
        item.append(element("h4", "", "Your answer"));
        item.append(transcriptBlock(entry));
        if (entry.delivery) item.append(deliveryBlock(entry.delivery));
        if (entry.feedback.length) {
          item.append(element("h4", "", "Feedback"));
          const list = element("ul", "feedback");
          list.append(...entry.feedback.map((sentence) => element("li", "", sentence)));
          item.append(list);
        }
        item.append(element("h4", "", "Model answer"));
        item.append(element("p", "model-answer", entry.model_answer));
        return item;
      }),
    );
    ui.results.hidden = false;
    ui.resultsHeading.focus();
    say("");
  }

  // --- Wiring ---------------------------------------------------------------

  ui.record.addEventListener("click", startRecording);
  ui.stop.addEventListener("click", () => {
    stopRecording().then(() => ui.next.focus());
  });
  ui.next.addEventListener("click", next);
  ui.finish.addEventListener("click", finish);
  window.addEventListener("beforeunload", (event) => {
    // Recordings not yet accepted by the server exist only in this page.
    if (answers.some((answer) => ["recording", "recorded", "uploading"].includes(answer.state))) {
      event.preventDefault();
    }
  });

  (async () => {
    openStream();
    try {
      await refreshStatus();
    } catch {
      // The chips fill in with the first upload.
    }
    if (page.analyzed) {
      finish();
      return;
    }
    const firstOpen = answers.findIndex((answer) => answer.state === "not_recorded");
    showQuestion(firstOpen === -1 ? answers.length : firstOpen);
    keepPolling();
  })();
})();
