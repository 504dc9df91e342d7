/*
 * Editor code shared by the nodes of @soc-playbooks/node-red-host-isolation, served by Node-RED at
 * resources/@soc-playbooks/node-red-host-isolation/editor.js and loaded by each node's HTML that
 * needs it. Its rules are the driver's: window.hostIsolationRules (driver-rules.js, generated at
 * build from src/driver), looked up when used, so the two files may load in either order.
 *
 * window.hostIsolation:
 *   exceptionList(node, container, prefix) / readExceptions(container, prefix): the exception rows
 *   presetBoxes(node, box) / readPresets(box): one checkbox per driver preset
 *   validExceptions, validPresets, validHost, validUsername, validList(kind, name), validDuration,
 *   validNumber(name, min, max, integer):
 *     `validate` functions for node defaults: true, or a message saying what is wrong
 */
(function () {
  'use strict';
  if (window.hostIsolation) return; // several node sets load this file

  function rules() {
    if (!window.hostIsolationRules) throw new Error('host isolation: driver-rules.js did not load');
    return window.hostIsolationRules;
  }

  /** a Node-RED 3+ validator's answer: true, or the message, prefixed with the field's label or name */
  function verdict(problem, opt, name) {
    if (!problem) return true;
    var label = (opt && opt.label) || name;
    return label ? label + ': ' + problem : problem;
  }

  function exceptionList(node, container, prefix) {
    var R = rules();
    container.css('min-height', '150px').css('min-width', '450px').editableList({
      addItem: function (row, index, data) {
        row.css({ overflow: 'hidden', whiteSpace: 'nowrap' });
        var dir = $('<select class="' + prefix + '-dir" style="width:70px"><option value="in">in</option><option value="out">out</option></select>').appendTo(row);
        var proto = $('<select class="' + prefix + '-proto" style="width:70px; margin-left:4px"><option>tcp</option><option>udp</option><option>icmp</option><option>any</option></select>').appendTo(row);
        var addr = $('<input type="text" class="' + prefix + '-addr" placeholder="addr / CIDR (any)" style="width:150px; margin-left:4px">').appendTo(row);
        var port = $('<input type="text" class="' + prefix + '-port" placeholder="port or lo-hi" style="width:90px; margin-left:4px">').appendTo(row);
        var owner = $('<input type="text" class="' + prefix + '-owner" placeholder="uid / unit (out)" title="outbound traffic of a local user (uid or name), a systemd unit (name.service) or a cgroup v2 path" style="width:110px; margin-left:4px">').appendTo(row);
        var comment = $('<input type="text" class="' + prefix + '-comment" placeholder="comment" style="width:120px; margin-left:4px">').appendTo(row);
        dir.val(data.direction || 'in');
        proto.val(data.proto || 'tcp');
        addr.val(data.addr || '');
        port.val(data.port === undefined ? '' : data.port);
        owner.val(R.ownerText(data));
        row.data('icmpType', data.icmpType); // kept as given (set in the flow or by msg), no field of its own
        comment.val(data.comment || '');
        function mark(input, problem) {
          input.toggleClass('input-error', !!problem).attr('title', problem || null);
        }
        function check() {
          mark(addr, R.addrProblem(addr.val().trim()));
          mark(port, R.portProblem(port.val().trim(), proto.val()));
          mark(owner, R.ownerProblem(owner.val().trim(), dir.val(), proto.val()));
        }
        addr.on('change keyup input', check);
        port.on('change keyup input', check);
        owner.on('change keyup input', check);
        proto.on('change', check);
        dir.on('change', check);
        check();
      },
      removable: true,
      sortable: true
    });
    (node.exceptions || []).forEach(function (e) { container.editableList('addItem', e); });
  }

  function readExceptions(container, prefix) {
    var R = rules();
    var out = [];
    container.editableList('items').each(function () {
      var row = $(this);
      var e = { direction: row.find('.' + prefix + '-dir').val(), proto: row.find('.' + prefix + '-proto').val() };
      var addr = row.find('.' + prefix + '-addr').val().trim();
      var port = row.find('.' + prefix + '-port').val().trim();
      var comment = row.find('.' + prefix + '-comment').val().trim();
      var owner = R.ownerOf(row.find('.' + prefix + '-owner').val().trim());
      if (addr) e.addr = addr;
      if (port) e.port = /^\d+$/.test(port) ? Number(port) : port;
      if (owner) $.extend(e, owner);
      if (e.proto === 'icmp' && row.data('icmpType')) e.icmpType = row.data('icmpType');
      if (comment) e.comment = comment;
      out.push(e);
    });
    return out;
  }

  function presetBoxes(node, box) {
    var R = rules();
    R.PRESET_NAMES.forEach(function (p) {
      var what = (R.PRESETS[p] || []).map(function (e) {
        return e.direction + ' ' + e.proto + (e.port !== undefined ? ' ' + e.port : '') + (e.icmpType ? ' ' + e.icmpType : '') + (e.addr ? ' ' + e.addr : '');
      });
      $('<label style="width:auto; margin-right:12px"></label>')
        .attr('title', what.filter(function (w, i) { return what.indexOf(w) === i; }).join(', '))
        .append($('<input type="checkbox" style="width:auto; vertical-align:top; margin-right:4px">').attr('id', 'node-input-preset-' + p).attr('data-preset', p)
          .prop('checked', (node.presets || []).indexOf(p) >= 0))
        .append(document.createTextNode(p))
        .appendTo(box);
    });
  }

  function readPresets(box) {
    return box.find('input:checked').map(function () { return $(this).attr('data-preset'); }).get();
  }

  window.hostIsolation = {
    exceptionList: exceptionList,
    readExceptions: readExceptions,
    presetBoxes: presetBoxes,
    readPresets: readPresets,
    validExceptions: function (v, opt) {
      var R = rules();
      return verdict(R.exceptionsProblem(v, R.ICMP_TYPES), opt);
    },
    validPresets: function (v, opt) {
      var R = rules();
      if (v === undefined || v === null || v === '') return true;
      if (!Array.isArray(v)) return verdict('presets must be a list', opt);
      var bad = v.filter(function (p) { return R.PRESET_NAMES.indexOf(p) < 0; });
      return verdict(bad.length ? 'unknown preset ' + bad.join(', ') + ' (one of ' + R.PRESET_NAMES.join(', ') + ')' : null, opt);
    },
    validHost: function (v, opt) { return verdict(rules().hostProblem(v), opt); },
    validUsername: function (v, opt) { return verdict(rules().usernameProblem(v), opt); },
    /** kind: 'hosts' (names, IPs, CIDRs) or 'cidrs' */
    validList: function (kind, name) {
      return function (v, opt) { return verdict(rules().listProblem(v, kind), opt, name); };
    },
    /** blank passes (the runtime's default) */
    validNumber: function (name, min, max, integer) {
      return function (v, opt) { return verdict(rules().numberProblem(v, min, max, integer !== false), opt, name); };
    },
    /** seconds until the host releases itself: blank or 0 (none) up to the driver's maximum */
    validDuration: function (v, opt) {
      var R = rules();
      return verdict(R.numberProblem(v, 0, R.MAX_DURATION, true), opt, 'duration');
    }
  };
})();
