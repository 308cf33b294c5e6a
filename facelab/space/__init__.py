"""The latent space: every crop's code (`latent`), the 2-D maps of it (`projection`, and
`generative_map`'s maps that decode), clusters, the map's table and chart, and the probe that
tells how well a label is separated.

Maps and clusters are estimators (`fit` returns self, learned values end in `_`, `transform` /
`predict` place new faces), so every page places a face on the same map Explore shows."""
