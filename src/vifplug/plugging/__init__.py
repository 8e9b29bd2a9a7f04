"""The plug path: everything between the API and the plugins.

``service`` orders each operation; ``admission`` turns a raw request into a
checked plugin, VIF and instance; ``placement`` is the only reader of the
logical network definitions (``networks``); ``lifecycle`` moves a record
between its states; ``reconcile`` converges the host on the state through
``lifecycle``; ``engine`` wires it all together in start-up order.
"""
