// Plotly's core (scatter, axes, hover, the mode bar) and the traces the Feature maps page draws: heatmap (the
// mosaic, one channel), image (the picture under an overlay) and bar (the histogram of a channel's values).
// Exposed as the global FeatvizPlotly, so it never meets Streamlit's own Plotly.
var Plotly = require('plotly.js/lib/core');
Plotly.register([require('plotly.js/lib/heatmap'), require('plotly.js/lib/image'), require('plotly.js/lib/bar')]);
module.exports = Plotly;
