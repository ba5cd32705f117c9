"""QR code labels: a versioned payload that identifies a device (never a secret), rendering and
verification with zxing-cpp and Pillow, batch output with a manifest, and scanning of photos.

See docs/qr-payload.md. zxing-cpp and Pillow are imported only when a label is made or read.
"""
