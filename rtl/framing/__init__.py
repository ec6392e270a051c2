"""Frames: the CRC, the packer and framer (TLPs into frames), the deframer and unpacker (frames into TLPs), and the link-less encapsulator and decapsulator built of them."""
