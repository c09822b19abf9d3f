// Before/after viewer: the bicubic canvas under the model's <img>, the <img> clipped at the
// slider position; both share one transform (pan with the pointer, zoom with the wheel or the
// buttons). 1:1 means one image pixel per CSS pixel.
"use strict";

// eslint-disable-next-line no-unused-vars
class CompareViewer {
  constructor() {
    this.viewport = document.getElementById("viewport");
    this.stage = document.getElementById("stage");
    this.before = document.getElementById("before");
    this.after = document.getElementById("result");
    this.divider = document.getElementById("divider");
    this.split = document.getElementById("split");
    this.zoomText = document.getElementById("zoom-text");
    this.width = 0;
    this.height = 0;
    this.zoom = 1;
    this.x = 0;
    this.y = 0;
    this.split.addEventListener("input", () => this.applySplit());
    document.getElementById("zoom-in").addEventListener("click", () => this.zoomBy(2));
    document.getElementById("zoom-out").addEventListener("click", () => this.zoomBy(0.5));
    document.getElementById("zoom-1").addEventListener("click", () => this.setZoom(1));
    document.getElementById("zoom-fit").addEventListener("click", () => this.fit());
    this.viewport.addEventListener("wheel", (e) => {
      e.preventDefault();
      const box = this.viewport.getBoundingClientRect();
      this.zoomBy(e.deltaY < 0 ? 1.25 : 0.8, e.clientX - box.left, e.clientY - box.top);
    }, {passive: false});
    this.viewport.addEventListener("pointerdown", (e) => this.startDrag(e));
  }

  // Shows a new pair: `before` is a canvas already drawn, `url` the result PNG's URL.
  show(width, height, url) {
    this.width = width;
    this.height = height;
    this.after.width = width;
    this.after.height = height;
    this.after.src = url;
    this.stage.style.width = width + "px";
    this.stage.style.height = height + "px";
    this.setZoom(1, width / 2, height / 2, true);
    this.applySplit();
  }

  applySplit() {
    const percent = Number(this.split.value);
    this.after.style.clipPath = `inset(0 0 0 ${percent}%)`;
    this.divider.style.left = percent + "%";
    this.divider.style.width = Math.max(1, 2 / this.zoom) + "px";
  }

  // Zoom to `zoom`, keeping the image point under viewport point (vx, vy) in place; with
  // `centre`, (vx, vy) is an image point to put in the middle of the viewport.
  setZoom(zoom, vx, vy, centre) {
    const box = this.viewport.getBoundingClientRect();
    zoom = Math.min(32, Math.max(1 / 32, zoom));
    if (centre) {
      this.x = box.width / 2 - vx * zoom;
      this.y = box.height / 2 - vy * zoom;
    } else {
      if (vx === undefined) {
        vx = box.width / 2;
        vy = box.height / 2;
      }
      this.x = vx - (vx - this.x) * (zoom / this.zoom);
      this.y = vy - (vy - this.y) * (zoom / this.zoom);
    }
    this.zoom = zoom;
    this.apply();
  }

  zoomBy(factor, vx, vy) {
    this.setZoom(this.zoom * factor, vx, vy);
  }

  fit() {
    const box = this.viewport.getBoundingClientRect();
    const zoom = Math.min(box.width / this.width, box.height / this.height);
    this.setZoom(zoom, this.width / 2, this.height / 2, true);
  }

  apply() {
    this.stage.style.transform = `translate(${this.x}px, ${this.y}px) scale(${this.zoom})`;
    // Enlarged pixels stay square so that the comparison shows what the model produced.
    this.stage.classList.toggle("pixelated", this.zoom >= 2);
    this.zoomText.textContent = `${Math.round(this.zoom * 100)}%`;
    this.applySplit();
  }

  startDrag(event) {
    if (event.button !== 0) return;
    const startX = event.clientX - this.x;
    const startY = event.clientY - this.y;
    this.viewport.setPointerCapture(event.pointerId);
    this.viewport.classList.add("dragging");
    const move = (e) => {
      this.x = e.clientX - startX;
      this.y = e.clientY - startY;
      this.apply();
    };
    const stop = () => {
      this.viewport.classList.remove("dragging");
      this.viewport.removeEventListener("pointermove", move);
      this.viewport.removeEventListener("pointerup", stop);
      this.viewport.removeEventListener("pointercancel", stop);
    };
    this.viewport.addEventListener("pointermove", move);
    this.viewport.addEventListener("pointerup", stop);
    this.viewport.addEventListener("pointercancel", stop);
  }
}
