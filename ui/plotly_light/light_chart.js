// A chart of the Feature maps page, drawn in the page (no frame) by featviz's own build of Plotly: its core
// with the heatmap, image and bar traces, 1.2 MB, instead of the 4.7 MB bundle Streamlit starts for
// st.plotly_chart. See ui/light_chart.py. The chart looks as st.plotly_chart draws it (Streamlit's theme,
// read from the page), can report a click on a point, and keeps its zoom while it is drawn again.

let loading = null;

function afterPaint() {
  // The still picture of the maps (ui/still.py) arrives with the chart: let it be painted before Plotly's
  // code, which holds the page for a moment while it starts.
  return new Promise((resolve) => requestAnimationFrame(() => setTimeout(resolve, 0)));
}

function address(src) {
  return new URL(src, window.location.href).href;
}

function plotly(src) {
  if (window.FeatvizPlotly) return Promise.resolve(window.FeatvizPlotly);
  if (!loading) {
    loading = afterPaint().then(() => new Promise((resolve, reject) => {
      const script = document.createElement("script");
      script.src = address(src);
      script.async = true;
      script.onload = () => resolve(window.FeatvizPlotly);
      script.onerror = () => {
        loading = null;
        script.remove();
        reject(new Error("The chart's code could not be loaded"));
      };
      document.head.appendChild(script);
    }));
  }
  return loading;
}

function themeValue(element, name, fallback) {
  const value = getComputedStyle(element).getPropertyValue(`--st-${name}`).trim();
  return value && value !== "unset" ? value : fallback;
}

function isLight(colour) {
  const probe = document.createElement("canvas").getContext("2d");
  probe.fillStyle = colour;
  const hex = probe.fillStyle;  // the browser's own reading of the colour: #rrggbb or rgba(...)
  const rgb = hex.startsWith("#") ? [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16))
    : (hex.match(/[\d.]+/g) || [255, 255, 255]).slice(0, 3).map(Number);
  return 0.2126 * rgb[0] + 0.7152 * rgb[1] + 0.0722 * rgb[2] > 128;
}

function isObject(value) {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

function withDefaults(target, defaults) {
  // What the figure says wins; the theme fills in what it leaves open (as Streamlit merges its theme).
  for (const [key, value] of Object.entries(defaults)) {
    if (isObject(value)) {
      if (target[key] === undefined) target[key] = {};
      if (isObject(target[key])) withDefaults(target[key], value);
    } else if (target[key] === undefined) {
      target[key] = value;
    }
  }
  return target;
}

function themedSpec(text, element) {
  // Streamlit's Plotly template names its palette by placeholder colours (#000001 to #000030): the page's
  // categorical, sequential and diverging chart colours.
  const palettes = ["chart-categorical-colors", "chart-sequential-colors", "chart-diverging-colors"];
  palettes.forEach((name, p) => {
    const colours = themeValue(element, name, "").split(",").map((c) => c.trim()).filter(Boolean);
    colours.slice(0, 10).forEach((colour, i) => {
      const placeholder = `#0000${String(p * 10 + i + 1).padStart(2, "0")}`;
      text = text.split(`"${placeholder}"`).join(JSON.stringify(colour));
    });
  });
  const spec = JSON.parse(text);
  const font = themeValue(element, "font", "\"Source Sans\", sans-serif");
  const headingFont = themeValue(element, "heading-font", font);
  const heading = themeValue(element, "heading-color", "#31333F");
  const background = themeValue(element, "background-color", "#ffffff");
  const border = themeValue(element, "border-color", "rgba(49, 51, 63, 0.2)");
  // Streamlit's own choices for chart text and grid lines: greys that depend on a light or dark page.
  const light = isLight(background);
  const muted = light ? "#808495" : "#e6eaf1";
  const grid = light ? "#e6eaf1" : "#31333F";
  const axis = (standoff) => ({
    tickfont: { color: muted, size: 12 }, title: { font: { color: muted, size: 14 }, standoff },
    gridcolor: grid, zerolinecolor: grid, tickcolor: grid, automargin: true,
  });
  withDefaults(spec.layout, {
    font: { color: muted, family: font, size: 12, weight: 400 },
    title: { font: { family: headingFont, size: 16, color: heading }, pad: { l: 2 }, x: 0, xanchor: "left" },
    paper_bgcolor: background,
    plot_bgcolor: background,
    margin: { pad: 8, l: 0, r: 0 },
    xaxis: Object.assign(axis(24), { showgrid: false, zeroline: false }),
    yaxis: Object.assign(axis(32), { ticklabelposition: "outside" }),
    hoverlabel: { bgcolor: background, bordercolor: border, font: { color: muted, family: font, size: 12 } },
  });
  return spec;
}

function fullScreenButton() {
  return {
    name: "fullscreen",
    title: "Full screen (Esc to leave)",
    icon: { width: 24, height: 24, path: "M3 3h7v2H5v5H3zm11 0h7v7h-2V5h-5zM3 14h2v5h5v2H3zm16 0h2v7h-7v-2h5z" },
    click: (graph) => {
      const box = graph.closest(".fv-light-chart") || graph;
      if (document.fullscreenElement) document.exitFullscreen();
      else if (box.requestFullscreen) box.requestFullscreen();
    },
  };
}

export default function (component) {
  const { parentElement, data, setTriggerValue } = component;
  // The payload: a line of JSON (the address of the chart's code; "start": only fetch and start the code;
  // "clicks": report a click), then the figure as Plotly JSON (ui/light_chart.py).
  const payload = typeof data === "string" ? data : new TextDecoder().decode(data);
  const cut = payload.indexOf("\n");
  const head = JSON.parse(payload.slice(0, cut));
  const text = payload.slice(cut + 1);
  const src = head.src;
  if (head.start) {
    const element = parentElement.closest("[data-testid=stElementContainer]");
    if (element) element.style.display = "none";  // takes no room on the page
    plotly(src).catch(() => {});
    return undefined;
  }
  let box = parentElement.querySelector(".fv-light-chart");
  if (!box) {
    box = document.createElement("div");
    box.className = "fv-light-chart";
    box.style.width = "100%";
    parentElement.appendChild(box);
  }
  box.style.background = themeValue(parentElement, "background-color", "#ffffff");  // shown full screen
  // Streamlit calls this function again for new data without calling the cleanup of the call before, so the
  // chart's state lives on its element: the latest call's token, its height, one observer of its size.
  const token = {};
  box._fvToken = token;
  plotly(src).then((Plotly) => {
    if (box._fvToken !== token) return;  // a newer call draws
    const spec = themedSpec(text, parentElement);
    const config = Object.assign({}, spec.config);  // no logo, no "Share chart..." (ui/light_chart.py)
    // a full-screen button where the browser can show an element full screen (not on an iPhone)
    config.modeBarButtonsToAdd = document.fullscreenEnabled ? [fullScreenButton()] : [];
    config.modeBarButtonsToRemove = ["select2d", "lasso2d"];  // a click opens a channel; nothing to select
    box._fvHeight = spec.layout.height;
    const layout = Object.assign({}, spec.layout, { width: box.clientWidth || undefined });
    Plotly.react(box, spec.data, layout, config).then(() => {
      if (box._fvToken !== token) return;
      box.removeAllListeners?.("plotly_click");
      if (!head.clicks) return;
      box.on("plotly_click", (event) => {
        const points = (event.points || []).map((p) => ({
          curve_number: p.curveNumber,
          point_index: p.pointIndex,
          point_number: p.pointNumber,
          x: p.x,
          y: p.y,
          customdata: p.customdata,
        }));
        setTriggerValue("click", { points });
      });
    });
    if (!box._fvResize) {
      box._fvResize = new ResizeObserver(() => {
        const full = document.fullscreenElement === box;
        const width = full ? window.innerWidth : box.clientWidth;
        const height = full ? window.innerHeight : box._fvHeight;
        const drawn = box._fullLayout;
        if (width && drawn && (drawn.width !== width || drawn.height !== height)) {
          Plotly.relayout(box, { width, height });
        }
      });
      box._fvResize.observe(box);
    }
  }).catch(() => {
    box.textContent = "The interactive chart could not be started: reload the page.";
  });
  return () => {  // the element is leaving the page
    if (box._fvToken !== token) return;  // a newer call owns the chart
    box._fvToken = null;
    if (box._fvResize) box._fvResize.disconnect();
    box._fvResize = null;
  };
}
