// The playground (/account/playground/): the cost of what the form asks, from the prices the
// page embeds (the charge's own, per model, size and quality: accounts.playground), and the
// generation the form made, watched through GET /api/v1/generations/{id}/events with the
// session: partial images sharpen in their slots, then the final images replace them.
(() => {
  const catalog = JSON.parse(document.getElementById("playground-catalog").textContent);
  const form = document.getElementById("playground-form");
  const field = (name) => form.elements[name];
  const balance = Number(document.getElementById("playground-balance").textContent);
  const costOutput = document.getElementById("playground-cost");
  const costWarning = document.getElementById("playground-cost-warning");

  function fillSelect(select, values) {
    const kept = values.includes(select.value) ? select.value : values[0];
    select.replaceChildren(...values.map((value) => new Option(value, value, false, value === kept)));
  }

  function showModel() {
    const model = catalog[field("model").value];
    if (!model) return;
    fillSelect(field("size"), model.sizes);
    fillSelect(field("quality"), model.qualities);
  }

  function showCost() {
    const model = catalog[field("model").value];
    const price = model?.prices[field("size").value]?.[field("quality").value];
    if (price === undefined) {
      costOutput.textContent = "not available";
      costWarning.hidden = true;
      return;
    }
    const cost = price * Number(field("n").value);
    costOutput.textContent = `${cost} credit${cost === 1 ? "" : "s"}`;
    costWarning.hidden = cost <= balance;
  }

  field("model").addEventListener("change", () => { showModel(); showCost(); });
  for (const name of ["size", "quality", "n"]) field(name).addEventListener("change", showCost);
  showModel();
  showCost();

  const result = document.getElementById("playground-result");
  const eventsUrl = result.dataset.eventsUrl;
  if (!eventsUrl || ["succeeded", "failed", "canceled"].includes(result.dataset.status)) return;

  const status = document.getElementById("playground-status");
  const slot = (index) => result.querySelector(`.playground-slot[data-index="${index}"]`);

  function show(index, src, state, label) {
    const figure = slot(index);
    if (!figure) return;
    let img = figure.querySelector("img");
    if (!img) {
      img = document.createElement("img");
      img.alt = `Image ${index + 1}`;
      figure.prepend(img);
    }
    img.src = src;
    figure.dataset.state = state;
    figure.querySelector(".slot-state").textContent = label;
  }

  function finished(generation, text) {
    events.close(); // the stream has ended: EventSource would otherwise reconnect
    result.dataset.status = generation.status;
    status.textContent = text;
  }

  const events = new EventSource(eventsUrl);
  const on = (name, handle) => events.addEventListener(name, (event) => handle(JSON.parse(event.data)));
  on("generation.queued", (generation) => {
    const place = generation.queue_position;
    status.textContent = place ? `Queued: #${place} in line.` : "Queued.";
  });
  on("generation.started", () => { status.textContent = "Generating…"; });
  on("generation.partial_image", (partial) => {
    const number = partial.partial_image_index + 1;
    show(partial.image_index, `data:image/${partial.output_format};base64,${partial.b64_json}`, "partial",
      `partial ${number}`);
    status.textContent = `Generating… partial image ${number} of image ${partial.image_index + 1}.`;
  });
  on("generation.succeeded", (generation) => {
    generation.images.forEach((image, index) => show(index, image.url, "final", "final"));
    const count = generation.images.length;
    finished(generation, `Done: ${count} image${count === 1 ? "" : "s"}, ${generation.usage.credits} credits.`);
  });
  on("generation.failed", (generation) => {
    const refunded = generation.usage.credits_refunded || 0;
    finished(generation, `Failed: ${generation.error?.message || "the generation failed"} ${refunded} credits refunded.`);
  });
  on("generation.canceled", (generation) => {
    finished(generation, `Canceled; ${generation.usage.credits_refunded || 0} credits refunded.`);
  });
})();
