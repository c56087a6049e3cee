"""The Streamlit side of featviz: caching, the shared sidebar, URL state and error display.

Pages import from here; ``featviz_core`` never imports Streamlit.
"""
