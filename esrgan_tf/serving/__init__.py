"""TF Serving protocol: `esrgan-serve` (server.py, rest.py, core.py) and a client (client.py).

Submodules are imported on demand (`from esrgan_tf.serving import server`), so that importing the
package does not pull in gRPC.
"""
