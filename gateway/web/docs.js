/* Renders /openapi.json as a plain reference page (works offline; no Swagger UI from a CDN). */
"use strict";
(async function () {
  const el = (tag, cls, text) => { const n = document.createElement(tag); if (cls) n.className = cls; if (text !== undefined) n.textContent = text; return n; };
  const response = await fetch("/openapi.json", { credentials: "same-origin" });
  if (response.status === 401) { window.location.href = "/login"; return; }
  const spec = await response.json();
  document.getElementById("doc-title").textContent = spec.info.title;
  document.getElementById("doc-version").textContent = "v" + spec.info.version + " · OpenAPI " + spec.openapi;
  document.getElementById("doc-intro").textContent = spec.info.description || "";
  const resolve = (schema) => {
    if (schema && schema.$ref) return spec.components.schemas[schema.$ref.split("/").pop()] || schema;
    return schema;
  };
  const typeOf = (schema) => {
    if (!schema) return "";
    if (schema.$ref) return schema.$ref.split("/").pop();
    if (schema.anyOf) return schema.anyOf.map(typeOf).join(" | ");
    if (schema.enum) return schema.enum.map((v) => JSON.stringify(v)).join(" | ");
    if (schema.type === "array") return typeOf(schema.items) + "[]";
    return schema.type || "";
  };
  const root = document.getElementById("doc-paths");
  for (const [path, ops] of Object.entries(spec.paths)) {
    for (const [method, op] of Object.entries(ops)) {
      const box = el("details", "op");
      const summary = el("summary");
      summary.append(el("span", "method " + method, method.toUpperCase()), el("span", "path", path), el("span", "summary", op.summary || ""));
      box.append(summary);
      if (op.description) box.append(el("p", "summary", op.description));
      if (op.parameters && op.parameters.length) {
        box.append(el("h4", "", "Parameters"));
        const table = el("table");
        const head = el("tr");
        ["name", "in", "type", "required", "description"].forEach((h) => head.append(el("th", "", h)));
        table.append(head);
        for (const p of op.parameters) {
          const row = el("tr");
          [p.name, p.in, typeOf(p.schema), p.required ? "yes" : "", p.description || (p.schema && p.schema.description) || ""]
            .forEach((v) => row.append(el("td", "", v)));
          table.append(row);
        }
        box.append(table);
      }
      if (op.requestBody) {
        box.append(el("h4", "", "Body"));
        const schema = resolve(op.requestBody.content["application/json"].schema);
        box.append(el("pre", "", JSON.stringify(schema, null, 2)));
      }
      box.append(el("h4", "", "Responses"));
      const table = el("table");
      for (const [code, r] of Object.entries(op.responses || {})) {
        const row = el("tr");
        const content = r.content ? Object.entries(r.content).map(([type, c]) => type + " " + typeOf(c.schema)).join(", ") : "";
        [code, r.description || "", content].forEach((v) => row.append(el("td", "", v)));
        table.append(row);
      }
      box.append(table);
      root.append(box);
    }
  }
})();
