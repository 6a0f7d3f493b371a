"""``crdr view``: a local web page to explore one .crdr file's realism knob.

* :mod:`crdr_codec.view.session`: the file decoded once (entropy decoding), images
  synthesized per beta and cached, metrics, same-size conventional anchors;
* :mod:`crdr_codec.view.server`: a standard-library HTTP server on 127.0.0.1 serving
  the page (``static/``: plain HTML, CSS and JavaScript, no build step) and a small
  JSON/PNG API;
* :mod:`crdr_codec.view.command`: the click command registered in :mod:`crdr_codec.cli`.
"""
