"""From a video (or the webcam, or a photo) to face crops: reading frames, finding and cutting
the one face, building and pruning a workspace's dataset, its preview clip and thumbnails, the
user's labels on the crops, and the bundled sample.

`dataset.append_crops` is the one way crops enter a workspace; `faces.crop_box` / `crop_face`
the one way a crop is cut (video, webcam and photos alike)."""
