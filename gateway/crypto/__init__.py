"""Keys and signatures: the gateway's keys and their rotation, clients' keys, JWS on answers and on outbound
calls."""
