// fsl search: the page of `fsl serve`. Plain JavaScript, no external code.
"use strict";

const $ = (id) => document.getElementById(id);
let lastQuery = null;

function show(page) {
  document.querySelectorAll(".page").forEach((p) => p.classList.toggle("active", p.id === page));
  document.querySelectorAll("nav button").forEach((b) => b.classList.toggle("active", b.dataset.page === page));
  if (page === "gallery") loadGallery();
  if (page === "map") drawMap();
}
document.querySelectorAll("nav button").forEach((b) => b.addEventListener("click", () => show(b.dataset.page)));

function token() {
  const value = $("token").value || localStorage.getItem("fsl-token") || "";
  if ($("token").value) localStorage.setItem("fsl-token", $("token").value);
  return value;
}

async function call(url, options = {}) {
  const response = await fetch(url, options);
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.detail || `${response.status} ${response.statusText}`);
  return body;
}

function card(match) {
  const li = document.createElement("li");
  const img = document.createElement("img");
  img.src = `/api/items/${match.item_id}/thumbnail`;
  img.alt = match.person;
  li.appendChild(img);
  li.appendChild(document.createTextNode(`${match.person} `));
  const d = document.createElement("div");
  d.textContent = `distance ${match.distance.toFixed(3)}`;
  li.appendChild(d);
  return li;
}

async function search(file) {
  const form = new FormData();
  form.append("photo", file);
  form.append("k", $("search-k").value || "5");
  $("decision").textContent = "searching...";
  $("results").replaceChildren();
  try {
    const result = await call("/api/search", { method: "POST", body: form });
    lastQuery = result.map || null;
    const decision = $("decision");
    decision.className = result.person ? "known" : "unknown";
    decision.textContent = result.person
      ? `${result.person} (distance ${result.distance.toFixed(3)} <= threshold ${result.threshold.toFixed(3)})`
      : `unknown (nearest at ${result.distance === null ? "-" : result.distance.toFixed(3)}, threshold ${result.threshold.toFixed(3)})`;
    if (result.in_domain === false) decision.textContent += " - this photo is unlike the model's training images: unreliable";
    result.matches.forEach((m) => $("results").appendChild(card(m)));
  } catch (error) {
    $("decision").className = "error";
    $("decision").textContent = error.message;
  }
}

$("search-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const file = $("search-photo").files[0];
  if (file) search(file);
});
$("search-photo").addEventListener("change", () => { if ($("search-photo").files[0]) search($("search-photo").files[0]); });
const drop = $("drop");
drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (event) => {
  event.preventDefault();
  drop.classList.remove("over");
  if (event.dataTransfer.files[0]) search(event.dataTransfer.files[0]);
});

async function loadGallery() {
  const people = $("people");
  people.replaceChildren();
  try {
    const items = await call("/api/items");
    const byPerson = {};
    items.forEach((item) => (byPerson[item.person] = byPerson[item.person] || []).push(item));
    Object.keys(byPerson).sort().forEach((name) => {
      const div = document.createElement("div");
      div.className = "person";
      const h = document.createElement("h3");
      h.textContent = `${name} (${byPerson[name].length}) `;
      const remove = document.createElement("button");
      remove.textContent = "delete person";
      remove.addEventListener("click", () => removeThing(`/api/people/${encodeURIComponent(name)}`));
      h.appendChild(remove);
      div.appendChild(h);
      const list = document.createElement("ol");
      list.className = "cards";
      byPerson[name].forEach((item) => {
        const li = card({ item_id: item.id, person: item.source || name, distance: 0 });
        li.lastChild.textContent = "";
        const del = document.createElement("button");
        del.textContent = "delete";
        del.addEventListener("click", () => removeThing(`/api/items/${item.id}`));
        li.appendChild(del);
        list.appendChild(li);
      });
      div.appendChild(list);
      people.appendChild(div);
    });
    $("status").textContent = `${items.length} photos of ${Object.keys(byPerson).length} people`;
  } catch (error) {
    people.textContent = error.message;
  }
}

async function removeThing(url) {
  try {
    await call(url, { method: "DELETE", headers: { "X-FSL-Token": token() } });
    loadGallery();
  } catch (error) {
    $("enrol-message").className = "error";
    $("enrol-message").textContent = error.message;
  }
}

$("enrol-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = new FormData();
  form.append("name", $("enrol-name").value);
  form.append("photo", $("enrol-photo").files[0]);
  try {
    const result = await call("/api/enrol", { method: "POST", body: form, headers: { "X-FSL-Token": token() } });
    $("enrol-message").className = "known";
    $("enrol-message").textContent = `enrolled ${result.person} (item ${result.item_id})`;
    loadGallery();
  } catch (error) {
    $("enrol-message").className = "error";
    $("enrol-message").textContent = error.message;
  }
});

const COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];

async function drawMap() {
  const canvas = $("map-canvas");
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  const { points } = await call("/api/map");
  if (!points.length) { ctx.fillText("The gallery needs two or more photos for a map.", 20, 30); return; }
  const all = lastQuery ? points.concat([lastQuery]) : points;
  const xs = all.map((p) => p.x), ys = all.map((p) => p.y);
  const [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
  const sx = (x) => 30 + ((x - x0) / (x1 - x0 || 1)) * (canvas.width - 60);
  const sy = (y) => canvas.height - 30 - ((y - y0) / (y1 - y0 || 1)) * (canvas.height - 60);
  const people = [...new Set(points.map((p) => p.person))].sort();
  const colour = (person) => COLOURS[people.indexOf(person) % COLOURS.length];
  points.forEach((p) => {
    ctx.fillStyle = colour(p.person);
    ctx.beginPath();
    ctx.arc(sx(p.x), sy(p.y), 5, 0, 2 * Math.PI);
    ctx.fill();
  });
  if (lastQuery) {
    ctx.strokeStyle = "black";
    ctx.lineWidth = 3;
    const [qx, qy] = [sx(lastQuery.x), sy(lastQuery.y)];
    ctx.beginPath();
    ctx.moveTo(qx - 8, qy - 8); ctx.lineTo(qx + 8, qy + 8);
    ctx.moveTo(qx + 8, qy - 8); ctx.lineTo(qx - 8, qy + 8);
    ctx.stroke();
  }
  const legend = $("legend");
  legend.replaceChildren();
  people.forEach((person) => {
    const li = document.createElement("li");
    li.innerHTML = `<span style="color:${colour(person)}">&#9679;</span> `;
    li.appendChild(document.createTextNode(person));
    legend.appendChild(li);
  });
}

call("/api/health").then((h) => {
  $("status").textContent = `model ${h.model}, ${h.items} photos, threshold ${h.threshold.toFixed(3)} (${h.threshold_source}'s)`;
}).catch(() => {});
