"""Changing a face: directions in latent space (`directions`), the one composition of every
move and the detail-preserving display (`edit`), the independent pixel judge of a shift
(`judge`), and the strips, GIFs and videos of an edit (`animate`)."""
