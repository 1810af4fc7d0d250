"""deblur: LBAG and MIMO-UNet, their losses, the paper's metrics, training data (ReLoBlur
folders; other sources by entry point), BAPC, training, and full-resolution inference. It
imports only core."""
