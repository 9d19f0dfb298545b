/** Small DOM helpers shared by the demo's panels. */

/** The element with this id; a missing one is a bug in index.html. */
export function byId<T extends HTMLElement = HTMLElement>(id: string): T {
  const el = document.getElementById(id);
  if (!el) throw new Error(`demo: #${id} is missing from index.html`);
  return el as T;
}

/** Replaces a definition list's entries. */
export function fillList(dl: HTMLElement, entries: [string, string][]): void {
  dl.replaceChildren(
    ...entries.flatMap(([k, v]) => {
      const dt = document.createElement("dt");
      dt.textContent = k;
      const dd = document.createElement("dd");
      dd.append(...breakAfterSlashes(v));
      return [dt, dd];
    }),
  );
}

/** Text with a line-break opportunity (<wbr>) after each run of slashes, so that URLs and paths wrap between parts. */
function breakAfterSlashes(text: string): (string | Node)[] {
  return text
    .split(/(?<=\/)(?!\/)/)
    .flatMap((part, i) =>
      i === 0 ? [part] : [document.createElement("wbr"), part],
    );
}

/** A table row of text cells. */
export function tableRow(cells: string[], className?: string) {
  const tr = document.createElement("tr");
  for (const text of cells) {
    const td = document.createElement("td");
    td.textContent = text;
    tr.append(td);
  }
  if (className) tr.className = className;
  return tr;
}

/** A table row of header cells. */
export function headerRow(cells: string[]): HTMLTableRowElement {
  const tr = document.createElement("tr");
  for (const text of cells)
    tr.append(
      Object.assign(document.createElement("th"), { textContent: text }),
    );
  return tr;
}

export function setStatus(text: string): void {
  byId("status").textContent = text;
}

/** Shows an error in the banner at the top: the error's type and message, as the worker sent them. */
export function showError(error: unknown): void {
  const e = error as { name?: string; message?: string };
  const text =
    e && typeof e === "object" && e.message !== undefined
      ? `${e.name ?? "Error"}: ${e.message}`
      : String(error);
  byId("banner-text").textContent = text;
  byId("banner").hidden = false;
  console.error(text);
}

export function hideError(): void {
  byId("banner").hidden = true;
}

/** Human sizes: 1.2 MB, 340 kB. */
export function formatBytes(bytes: number): string {
  if (bytes >= 1e9) return `${(bytes / 1e9).toFixed(2)} GB`;
  if (bytes >= 1e6) return `${(bytes / 1e6).toFixed(1)} MB`;
  return `${(bytes / 1e3).toFixed(0)} kB`;
}

/** 1 min 05 s, 42 s. */
export function formatDuration(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  return s >= 60
    ? `${Math.floor(s / 60)} min ${String(s % 60).padStart(2, "0")} s`
    : `${s} s`;
}

/** Saves bytes as a download with this file name. */
export function download(name: string, data: BlobPart, type: string): void {
  const url = URL.createObjectURL(new Blob([data], { type }));
  const a = document.createElement("a");
  a.href = url;
  a.download = name;
  a.click();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}
