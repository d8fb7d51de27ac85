"""Config files of the analytics pipeline, rendered per site from typed settings.

``override.cfg.template`` is rendered by :func:`pipeline_config.render.render_override_cfg`.
"""
